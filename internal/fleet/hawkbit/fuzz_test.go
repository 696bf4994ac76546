package hawkbit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

var seeds = []string{
	`{"config":{"polling":{"sleep":"12:00:00"}},"_links":{"deploymentBase":{"href":"https://h/DEFAULT/controller/v1/d/deploymentBase/5?c=-2129030598"},"configData":{"href":"https://h/DEFAULT/controller/v1/d/configData"}}}`,
	`{"config":{"polling":{"sleep":"00:05:00"}},"_links":{"cancelAction":{"href":"https://h/DEFAULT/controller/v1/d/cancelAction/11"}}}`,
	`{"id":"8","deployment":{"download":"forced","update":"attempt","maintenanceWindow":"available","chunks":[{"part":"os","version":"1.0.79","name":"one","artifacts":[{"filename":"a.tandem","hashes":{"sha1":"x","md5":"y","sha256":"z"},"size":13,"_links":{"download":{"href":"https://h/a"},"download-http":{"href":"http://h/a"}}}],"metadata":[{"key":"k","value":"v"}]}]},"actionHistory":{"status":"RUNNING","messages":["m"]}}`,
	`{"id":"11","cancelAction":{"stopId":"11"}}`,
	`{"id":8}`,
	`{"config":{"polling":{"sleep":5}}}`,
	`{} {}`,
}

// FuzzParse feeds server documents to the three parsers: none panics, and
// what one accepts keeps its promises (valid enums, http(s) links).
func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if base, err := ParseBase(bytes.NewReader(b)); err == nil {
			for name, l := range base.Links {
				if !strings.HasPrefix(l.Href, "http") {
					t.Fatalf("link %s %q accepted", name, l.Href)
				}
			}
			_ = base.Sleep()
		}
		if d, err := ParseDeployment(bytes.NewReader(b)); err == nil {
			if d.ID == "" || !oneOf(d.Deployment.Download, Skip, Attempt, Forced) || !oneOf(d.Deployment.Update, Skip, Attempt, Forced) {
				t.Fatalf("deployment %+v accepted", d)
			}
			_, _, _ = pick(d)
			// What was accepted survives a round trip.
			out, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ParseDeployment(bytes.NewReader(out)); err != nil {
				t.Fatalf("re-parse: %v", err)
			}
		}
		if c, err := ParseCancel(bytes.NewReader(b)); err == nil && (c.ID == "" || c.CancelAction.StopID == "") {
			t.Fatalf("cancel %+v accepted", c)
		}
	})
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		doc, want string
		parse     func(string) error
	}{
		{`{"config":{"polling":{"sleep":5}}}`, "controller base: field config.polling.sleep: want string, got a JSON number", base},
		{`{"config":{"polling":{"sleep":"1h"}}}`, `config.polling.sleep: "1h": want HH:MM:SS`, base},
		{`{"_links":{"deploymentBase":{"href":"file:///etc/passwd"}}}`, "want an http or https URL", base},
		{`{"config":{}} trailing`, "data after the JSON document", base},
		{``, "empty body", base},
		{`{"id":8}`, "field id: want string", dep},
		{`{"id":"8","deployment":{"download":"now","update":"forced"}}`, `deployment.download "now"`, dep},
		{`{"id":"8","deployment":{"download":"forced","update":"forced","maintenanceWindow":"soon"}}`, "maintenanceWindow", dep},
		{`{"id":"8","deployment":{"download":"forced","update":"forced","chunks":[{"artifacts":[{"size":-1}]}]}}`, "negative size", dep},
		{`{"cancelAction":{}}`, "no action id", cancel},
		{`{"id":"1","future":{"field":[1,2,3]},"deployment":{"download":"forced","update":"forced","chunks":[]}}`, "", dep},
		{strings.Repeat(" ", MaxDocument+1), "larger than", base},
	} {
		err := tc.parse(tc.doc)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%.60q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

func base(s string) error   { _, err := ParseBase(strings.NewReader(s)); return err }
func dep(s string) error    { _, err := ParseDeployment(strings.NewReader(s)); return err }
func cancel(s string) error { _, err := ParseCancel(strings.NewReader(s)); return err }

func TestSleepAndActionID(t *testing.T) {
	if d, err := parseSleep("01:02:03"); err != nil || FormatSleep(d) != "01:02:03" {
		t.Errorf("sleep: %v %v", d, err)
	}
	if _, err := parseSleep("00:60:00"); err == nil {
		t.Error("00:60:00 accepted")
	}
	if id := ActionID("https://h/T/controller/v1/d/deploymentBase/42?c=7"); id != "42" {
		t.Errorf("action id %q", id)
	}
}
