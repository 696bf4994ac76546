package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/pelletier/go-toml/v2"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/health"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/testutil"
)

const workflowFile = "../../integrations/thin-edge/firmware_update.toml"

// workflow is the shipped firmware_update workflow, parsed.
type workflow struct {
	Operation string
	States    map[string]map[string]any
}

func loadWorkflow(t *testing.T) workflow {
	t.Helper()
	b, err := os.ReadFile(workflowFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", workflowFile, err)
	}
	w := workflow{States: map[string]map[string]any{}}
	for k, v := range doc {
		switch v := v.(type) {
		case string:
			if k != "operation" {
				t.Errorf("unknown top-level key %q", k)
			}
			w.Operation = v
		case map[string]any:
			w.States[k] = v
		default:
			t.Errorf("unknown top-level key %q", k)
		}
	}
	return w
}

// next lists the states a state may move to.
func (st stateDef) next() []string {
	var out []string
	for _, k := range []string{"on_success", "on_error", "on_exec", "on_timeout", "on_kill"} {
		switch v := st[k].(type) {
		case string:
			out = append(out, v)
		case map[string]any:
			out = append(out, v["status"].(string))
		}
	}
	if l, ok := st["on_stdout"].([]any); ok {
		for _, s := range l {
			out = append(out, s.(string))
		}
	}
	return out
}

type stateDef map[string]any

// The workflow is valid TOML of the shape tedge-agent reads, every state it
// names exists, every script runs a tandem command that exists, and each
// step's possible outputs are listed in its on_stdout.
func TestWorkflowFile(t *testing.T) {
	w := loadWorkflow(t)
	if w.Operation != "firmware_update" {
		t.Errorf("operation = %q", w.Operation)
	}
	for _, s := range []string{"init", "executing", "successful", "failed"} {
		if w.States[s] == nil {
			t.Errorf("no %s state", s)
		}
	}
	known := []string{"action", "script", "background_script", "on_success", "on_error", "on_exec", "on_timeout", "on_kill", "on_stdout", "timeout_second"}
	for name, st := range w.States {
		for k := range st {
			if !slices.Contains(known, k) {
				t.Errorf("state %s: unknown key %q", name, k)
			}
		}
		for _, n := range stateDef(st).next() {
			if w.States[n] == nil {
				t.Errorf("state %s moves to %q, which is not defined", name, n)
			}
		}
		script, _ := st["script"].(string)
		if bg, ok := st["background_script"].(string); ok {
			script = bg
		}
		if script != "" {
			argv := tokenize(script)
			if argv[0] != "tandem" {
				t.Errorf("state %s runs %q, not tandem", name, argv[0])
				continue
			}
			var args []string // the command words, up to the first flag or argument
			for _, a := range argv[1:] {
				if !regexp.MustCompile(`^[a-z]+$`).MatchString(a) || (len(args) == 3 && args[0] == "tedge") {
					break
				}
				args = append(args, a)
			}
			if r := run(t, nil, append(args, "--help")...); r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
				t.Errorf("state %s: tandem %v --help: %+v", name, args, r)
			}
		}
	}
	if w.States["successful"]["action"] != "cleanup" || w.States["failed"]["action"] != "cleanup" {
		t.Error("successful and failed must be cleanup states")
	}
	// The states each step prints (tedge.go) are the ones its on_stdout accepts.
	for state, prints := range map[string][]string{"executing": {"install", "failed"}, "install": {"restart", "failed"},
		"verify": {"successful", "failed"}, "abort": {"failed"}} {
		got, _ := w.States[state]["on_stdout"].([]any)
		for _, p := range prints {
			if !slices.Contains(got, any(p)) {
				t.Errorf("state %s: on_stdout %v lacks %q", state, got, p)
			}
		}
	}
}

// tokenize splits a script line as tedge-agent does (shell words, double
// quotes with backslash escapes).
func tokenize(s string) []string {
	var out []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted, inWord = !quoted, true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

var pathExpr = regexp.MustCompile(`\$\{\.(payload|topic)\.([A-Za-z0-9_]+)\}`)

// agentRun plays tedge-agent running the shipped workflow for one command on
// a simulated device: scripts run in-process as tandem would, their
// :::begin-tedge::: output moves the command on, the background reboot
// reboots the simulated device, and at every boot tandem health runs as
// its systemd unit would. It returns the statuses the command went through
// and its last payload.
type agentRun struct {
	t        *testing.T
	w        workflow
	dev      string
	env      map[string]string
	id       string
	payload  map[string]any
	statuses []string
}

func (r *agentRun) substitute(arg string) string {
	return pathExpr.ReplaceAllStringFunc(arg, func(m string) string {
		g := pathExpr.FindStringSubmatch(m)
		if g[1] == "topic" {
			if g[2] == "cmd_id" {
				return r.id
			}
			return m
		}
		s, _ := r.payload[g[2]].(string)
		return s
	})
}

func (r *agentRun) exec(script string) result {
	argv := tokenize(script)
	for i := range argv {
		argv[i] = r.substitute(argv[i])
	}
	if argv[0] != "tandem" {
		r.t.Fatalf("script %q does not run tandem", script)
	}
	return run(r.t, r.env, argv[1:]...)
}

func (r *agentRun) boot(hang bool) {
	r.t.Helper()
	if _, notes, err := sim.Reboot(r.dev, hang); err != nil {
		r.t.Fatalf("sim reboot: %v %q", err, notes)
	}
}

func (r *agentRun) health() health.Result {
	res, err := health.Check(health.Options{Open: func() (*device.Device, error) { return device.Open(device.Options{Root: r.dev}) }})
	if err != nil {
		r.t.Fatalf("health check: %v", err)
	}
	return res
}

func (r *agentRun) run() {
	t := r.t
	status := "init"
	for steps := 0; ; steps++ {
		if steps > 50 {
			t.Fatalf("the workflow does not end: %v", r.statuses)
		}
		r.statuses = append(r.statuses, status)
		r.payload["status"] = status
		st := stateDef(r.w.States[status])
		if st == nil {
			t.Fatalf("no state %q", status)
		}
		next := func(v any) string {
			switch v := v.(type) {
			case string:
				return v
			case map[string]any:
				if reason, ok := v["reason"].(string); ok {
					r.payload["reason"] = reason
				}
				return v["status"].(string)
			}
			t.Fatalf("state %s: no next state", status)
			return ""
		}
		switch {
		case st["action"] == "cleanup":
			return
		case st["action"] == "proceed", st["action"] == "await-agent-restart":
			status = next(st["on_success"])
		case st["background_script"] != nil:
			res := r.exec(st["background_script"].(string))
			if res.code != 0 {
				t.Fatalf("background script: %+v", res)
			}
			status = next(st["on_exec"])
			// The reboot happens; at boot tandem-health.service decides.
			r.boot(false)
			if h := r.health(); h.Verdict == health.RolledBack {
				r.boot(false) // the rollback's reboot; the agent runs its current state again
			}
		case st["script"] != nil:
			res := r.exec(st["script"].(string))
			if res.code != 0 {
				status = next(st["on_error"])
				continue
			}
			begin, end := strings.Index(res.stdout, ":::begin-tedge:::"), strings.Index(res.stdout, ":::end-tedge:::")
			if begin < 0 || end < begin {
				t.Fatalf("state %s: no :::begin-tedge::: output: %+v", status, res)
			}
			var out map[string]any
			if err := json.Unmarshal([]byte(res.stdout[begin+len(":::begin-tedge:::"):end]), &out); err != nil {
				t.Fatalf("state %s: output is not JSON: %v", status, err)
			}
			if !slices.Contains(st["on_stdout"].([]any), out["status"]) {
				t.Fatalf("state %s: output status %v is not in on_stdout", status, out["status"])
			}
			for k, v := range out {
				r.payload[k] = v
			}
			status = out["status"].(string)
		default:
			t.Fatalf("state %s: nothing to do", status)
		}
	}
}

// retainedTwin reads the retained firmware twin from the broker.
func retainedTwin(t *testing.T, addr string) map[string]any {
	t.Helper()
	got := make(chan []byte, 1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("twin-reader"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe("te/device/main///twin/firmware", 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case b := <-got:
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("twin %q: %v", b, err)
		}
		return doc
	case <-time.After(10 * time.Second):
		return nil
	}
}

// The shipped workflow, played as tedge-agent plays it, on a simulated device.
func TestWorkflowRun(t *testing.T) {
	dir, image := bundleFixture(t)
	createBundle(t, nil, filepath.Join(dir, "v2.tandem"), image, "--key", filepath.Join(dir, "release.key"))
	other, _ := bundleFixture(t)
	createBundle(t, nil, filepath.Join(dir, "untrusted.tandem"), image, "--key", filepath.Join(other, "release.key"))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	broker := testutil.StartMosquitto(t)

	for _, tc := range []struct {
		name, bundle, hook string
		want               []string
		reason, active     string
	}{
		{"success", "v2.tandem", "", []string{"init", "scheduled", "executing", "install", "restart", "await_restart", "verify", "successful"}, "", "b"},
		{"failed-health-check", "v2.tandem", "echo 'the app is down'; exit 1",
			[]string{"init", "scheduled", "executing", "install", "restart", "await_restart", "verify", "failed"}, "the app is down", "a"},
		{"bad-signature", "untrusted.tandem", "", []string{"init", "scheduled", "executing", "install", "failed"}, "trust", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newSim(t, "grub", "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M")
			if tc.hook != "" {
				testutil.WriteScript(t, filepath.Join(dev, "etc/tandem/hooks/health/check/50-app"), tc.hook+"\n")
			}
			r := &agentRun{t: t, w: loadWorkflow(t), dev: dev, id: "c8y-mapper-" + tc.name,
				env: map[string]string{"TANDEM_ROOT": dev, "TANDEM_TEDGE_BROKER": broker.Addr},
				payload: map[string]any{"name": "tandem-sim", "version": "2.0.0", "remoteUrl": srv.URL + "/" + tc.bundle,
					"tedgeUrl": "", "c8y": map[string]any{"opId": "5"}}}
			r.run()
			if fmt.Sprint(r.statuses) != fmt.Sprint(tc.want) {
				t.Fatalf("statuses %v, want %v (payload %v)", r.statuses, tc.want, r.payload)
			}
			if reason, _ := r.payload["reason"].(string); !strings.Contains(reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", reason, tc.reason)
			}
			if a, d := rugixBootOf(t, dev); a != tc.active || d != tc.active {
				t.Errorf("active %s default %s, want %s", a, d, tc.active)
			}
			if _, err := os.Stat(filepath.Join(dev, "var/lib/tandem/fleet/tedge-workflow.json")); !os.IsNotExist(err) {
				t.Errorf("the job was not forgotten: %v", err)
			}
			if tc.name == "success" {
				if twin := retainedTwin(t, broker.Addr); twin == nil || twin["version"] != "2.0.0" || twin["name"] != "tandem-sim" {
					t.Errorf("twin %v", twin)
				}
				if got := readFile(t, filepath.Join(dev, "slots/system-b.img")); !bytes.HasPrefix(got, readFile(t, image)) {
					t.Error("slot b does not hold the image")
				}
			}
		})
	}
}

func rugixBootOf(t *testing.T, dev string) (string, string) {
	doc := info(t, dev)
	a, _ := get(doc, "boot", "activeGroup").(string)
	d, _ := get(doc, "boot", "defaultGroup").(string)
	return a, d
}

// begin refuses while a group runs on trial, and a command without a URL.
func TestWorkflowRefusals(t *testing.T) {
	dev := newSim(t, "grub")
	r := run(t, map[string]string{"TANDEM_ROOT": dev}, "tedge", "workflow", "begin", "x", "--tedge-url", "", "--remote-url", "")
	if r.code != 0 || !strings.Contains(r.stdout, `"status":"failed"`) || !strings.Contains(r.stdout, "remoteUrl") {
		t.Fatalf("begin without a URL: %+v", r)
	}
	run(t, nil, "--root", dev, "system", "reboot", "--spare")
	run(t, nil, "sim", "reboot", dev)
	r = run(t, map[string]string{"TANDEM_ROOT": dev}, "tedge", "workflow", "begin", "y", "--remote-url", "http://127.0.0.1:1/v2.tandem")
	if r.code != 0 || !strings.Contains(r.stdout, `"status":"failed"`) || !strings.Contains(r.stdout, "on trial") {
		t.Fatalf("begin during a trial: %+v", r)
	}
	if r := run(t, nil, "tedge", "--device-topic-id", "main", "--root", dev); r.code != ExitUsage {
		t.Fatalf("bad device topic id: %+v", r)
	}
}

// tandem tedge, as the service runs it: it takes the retained command from
// the broker, installs, publishes restarting and returns once it has
// requested the reboot.
func TestTedgeCommand(t *testing.T) {
	dir, image := bundleFixture(t)
	createBundle(t, nil, filepath.Join(dir, "v2.tandem"), image, "--key", filepath.Join(dir, "release.key"))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	broker := testutil.StartMosquitto(t)
	dev := newSim(t, "grub", "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M")

	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker.Addr).SetClientID("mapper"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	topic := "te/device/main///cmd/firmware_update/c8y-mapper-9"
	cmd := fmt.Sprintf(`{"status":"init","name":"tandem-sim","version":"2.0.0","remoteUrl":%q}`, srv.URL+"/v2.tandem")
	if tok := c.Publish(topic, 1, true, cmd); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	r := run(t, map[string]string{"TANDEM_ROOT": dev, "TANDEM_TEDGE_BROKER": broker.Addr}, "tedge")
	if r.code != 0 || !strings.Contains(r.stdout, "restarting into group b") || !strings.Contains(r.stdout, "activity=rebooting") {
		t.Fatalf("tandem tedge: %+v", r)
	}
	st, err := device.ReadSimState(dev)
	if err != nil || st.Reboot == nil {
		t.Fatalf("no reboot requested: %v", err)
	}
	got := make(chan []byte, 1)
	c.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Payload() })
	select {
	case b := <-got:
		if !strings.Contains(string(b), `"status":"restarting"`) {
			t.Fatalf("retained state %s", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained state for the command")
	}
	if got := readFile(t, filepath.Join(dev, "slots/system-b.img")); !bytes.HasPrefix(got, readFile(t, image)) {
		t.Error("slot b does not hold the image")
	}
}
