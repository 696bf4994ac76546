package tedge

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	for _, tc := range []struct {
		in, err string
	}{
		{`{"status":"init","name":"fw","version":"2","remoteUrl":"https://x/y","extra":{"a":[1,2]}}`, ""},
		{`{"status":"executing"}`, ""},
		{`{"status":"init","tedgeUrl":null}`, ""},
		{``, "EOF"},
		{`[]`, "cannot unmarshal array"},
		{`null`, "not a JSON object"},
		{`{"status":"init"} {}`, "data after the JSON object"},
		{`{"name":"fw"}`, "no status"},
		{`{"status":3}`, "status is not a string"},
		{`{"status":"init","remoteUrl":{"u":1}}`, "remoteUrl is not a string"},
		{`{"status":"init","x":"` + strings.Repeat("a", MaxPayload) + `"}`, "more than"},
	} {
		_, err := ParseCommand([]byte(tc.in))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%.60s: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.60s: error %v, want %q", tc.in, err, tc.err)
		}
	}
}

// With changes the status and reason and keeps every other field as it was.
func TestCommandKeepsFields(t *testing.T) {
	in := `{"status":"init","name":"fw","remoteUrl":"https://x/y","c8y":{"opId":"7","list":[1,"two",null]},"n":1.5e3}`
	c, err := ParseCommand([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out := c.With("status", StatusFailed, "reason", "no").Marshal()
	var got, want map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(in), &want)
	want["status"], want["reason"] = "failed", "no"
	if gb, wb := mustJSON(got), mustJSON(want); string(gb) != string(wb) {
		t.Fatalf("got %s\nwant %s", gb, wb)
	}
	// The reason goes away again with an empty value; c itself is unchanged.
	again, _ := ParseCommand(c.With("status", StatusFailed, "reason", "no").With("status", StatusExecuting, "reason", "").Marshal())
	if again.Get("reason") != "" || again.Status() != StatusExecuting || c.Status() != StatusInit {
		t.Fatalf("with: %s, original %s", again.Marshal(), c.Marshal())
	}
}

func TestSource(t *testing.T) {
	for _, tc := range []struct {
		cmd          string
		preferRemote bool
		want, err    string
	}{
		{`{"status":"init","tedgeUrl":"http://127.0.0.1:8001/c8y/inventory/binaries/1","remoteUrl":"https://t1.cumulocity.com/inventory/binaries/1"}`, false, "http://127.0.0.1:8001/c8y/inventory/binaries/1", ""},
		{`{"status":"init","tedgeUrl":"http://127.0.0.1:8001/c8y/inventory/binaries/1","remoteUrl":"https://cdn.example.com/v2.tandem"}`, true, "https://cdn.example.com/v2.tandem", ""},
		{`{"status":"init","remoteUrl":"https://cdn.example.com/v2.tandem"}`, false, "https://cdn.example.com/v2.tandem", ""},
		{`{"status":"init","tedgeUrl":"http://127.0.0.1/x"}`, true, "http://127.0.0.1/x", ""},
		// issue 11, hardening 5: a local path (opened as root) is refused.
		{`{"status":"init","remoteUrl":"/data/v2.tandem"}`, false, "", "not an http(s) URL"},
		{`{"status":"init","tedgeUrl":"/etc/shadow","remoteUrl":"https://cdn.example.com/v2.tandem"}`, false, "", "not an http(s) URL"},
		{`{"status":"init","remoteUrl":"file:///dev/zero"}`, false, "", "not an http(s) URL"},
		{`{"status":"init"}`, false, "", "neither remoteUrl nor tedgeUrl"},
		{`{"status":"init","remoteUrl":"ftp://x/y"}`, false, "", "not an http(s) URL"},
		{`{"status":"init","remoteUrl":"v2.tandem"}`, false, "", "not an http(s) URL"},
		{`{"status":"init","remoteUrl":"http:///nohost"}`, false, "", "not an http(s) URL"},
	} {
		c, err := ParseCommand([]byte(tc.cmd))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Source(tc.preferRemote)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s (prefer remote %v): %q, %v; want %q, %q", tc.cmd, tc.preferRemote, got, err, tc.want, tc.err)
		}
	}
}

func TestTopics(t *testing.T) {
	tp, err := ParseTopics("te", "device/main//")
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		tp.Capability():  "te/device/main///cmd/firmware_update",
		tp.Commands():    "te/device/main///cmd/firmware_update/+",
		tp.Command("c1"): "te/device/main///cmd/firmware_update/c1",
		tp.Twin():        "te/device/main///twin/firmware",
	} {
		if got != want {
			t.Errorf("%s, want %s", got, want)
		}
	}
	if id, ok := tp.CommandID("te/device/main///cmd/firmware_update/c8y-mapper-1"); !ok || id != "c8y-mapper-1" {
		t.Errorf("CommandID = %q, %v", id, ok)
	}
	for _, topic := range []string{"te/device/main///cmd/firmware_update", "te/device/main///cmd/firmware_update/", "te/device/main///cmd/firmware_update/a/b", "te/device/child///cmd/firmware_update/x"} {
		if _, ok := tp.CommandID(topic); ok {
			t.Errorf("CommandID(%q) accepted", topic)
		}
	}
	child, err := ParseTopics("te", "device/child1//")
	if err != nil || child.Twin() != "te/device/child1///twin/firmware" {
		t.Errorf("child: %v %v", child, err)
	}
	for _, bad := range [][2]string{{"te", "device/main/"}, {"te", "device/+//"}, {"te/x", "device/main//"}, {"", "device/main//"}, {"te", "/device/main/"}} {
		if _, err := ParseTopics(bad[0], bad[1]); err == nil {
			t.Errorf("ParseTopics(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestBrokerURL(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:1883": "tcp://127.0.0.1:1883", "ssl://h:8883": "ssl://h:8883", "ws://h/mqtt": "ws://h/mqtt"} {
		if got, err := brokerURL(in); err != nil || got != want {
			t.Errorf("brokerURL(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := brokerURL(""); err == nil {
		t.Error("empty broker accepted")
	}
}

// FuzzParseCommand: any message either fails cleanly or gives a command
// whose re-encoding parses to the same fields, and With never loses one.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		`{"status":"init","name":"fw","version":"2","remoteUrl":"https://x/y","c8y":{"a":[1,2]}}`,
		`{"status":"failed","reason":"x"}`, `{"status":"init","tedgeUrl":null}`, `{}`, `[]`, `"x"`, `{"status":"init"}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCommand(b)
		if err != nil {
			return
		}
		n := c.With("status", StatusExecuting)
		again, err := ParseCommand(n.Marshal())
		if err != nil {
			t.Fatalf("re-encoded command does not parse: %v\n%s", err, n.Marshal())
		}
		if len(again.Fields) != len(c.Fields) && len(again.Fields) != len(c.Fields)+1 {
			t.Fatalf("fields %d, then %d", len(c.Fields), len(again.Fields))
		}
		for k, v := range c.Fields {
			if k == "status" {
				continue
			}
			var x, y any
			_ = json.Unmarshal(v, &x)
			_ = json.Unmarshal(again.Fields[k], &y)
			if string(mustJSON(x)) != string(mustJSON(y)) {
				t.Fatalf("field %s changed: %s, then %s", k, v, again.Fields[k])
			}
		}
		_, _ = c.Source(false)
	})
}
