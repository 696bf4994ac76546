package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/fleet/hawkbit/ddiserver"
)

func TestHawkbitCommand(t *testing.T) {
	dir := newSim(t, "grub")
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "tok"})
	write(t, dir, "etc/tandem/hawkbit.toml", "server = \""+srv.URL+"\"\ncontroller-id = \"dev-9\"\ntarget-token = \"tok\"\n[attributes]\nsite = \"lab\"\n")
	srv.RequestConfig("dev-9")
	r := run(t, nil, "--root", dir, "hawkbit", "--once", "--json")
	var ev struct{ Event, Activity string }
	if err := json.Unmarshal([]byte(lastLine(r.stdout)), &ev); r.code != 0 || err != nil || ev.Event != "step" || ev.Activity != "idle" {
		t.Fatalf("hawkbit --once: %+v (%v)", r, err)
	}
	if c := srv.Config("dev-9"); c["site"] != "lab" || c["tandem.compatible"] == "" {
		t.Fatalf("configData: %v", c)
	}

	// The memfault preset sends Memfault's keys with the project key as gateway token.
	mf := ddiserver.New(t, ddiserver.Options{Tenant: "default", GatewayToken: "project-key"})
	write(t, dir, "etc/tandem/mf.toml", "server = \""+mf.URL+"\"\ncontroller-id = \"SN42\"\ngateway-token = \"project-key\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\n")
	mf.RequestConfig("SN42")
	if r := run(t, nil, "--root", dir, "hawkbit", "--once", "--preset", "memfault", "--hawkbit-config", "/etc/tandem/mf.toml"); r.code != 0 || lastLine(r.stdout) != "idle" {
		t.Fatalf("hawkbit --preset memfault: %+v", r)
	}
	c := mf.Config("SN42")
	if c["memfault__hardware_version"] != "evt" || c["memfault__software_type"] != "linux" || c["memfault__current_version"] == "" {
		t.Fatalf("memfault configData: %v", c)
	}

	// A bad configuration is exit 3 and names the key.
	write(t, dir, "etc/tandem/hawkbit.toml", "server = \""+srv.URL+"\"\ncontroller-id = \"dev-9\"\ntoken = \"x\"\n")
	if r := run(t, nil, "--root", dir, "hawkbit", "--once"); r.code != ExitConfig || !strings.Contains(r.stderr, "line 3: unknown key token") {
		t.Fatalf("bad configuration: %+v", r)
	}
	// A wrong token is a one-line failure.
	write(t, dir, "etc/tandem/hawkbit.toml", "server = \""+srv.URL+"\"\ncontroller-id = \"dev-9\"\ntarget-token = \"nope\"\n")
	if r := run(t, nil, "--root", dir, "hawkbit", "--once"); r.code != ExitFailure || !strings.Contains(r.stderr, "refused the credentials") {
		t.Fatalf("wrong token: %+v", r)
	}
}

func TestMemfaultCommand(t *testing.T) {
	dir := newSim(t, "grub")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v0/releases/latest" || r.Header.Get("Memfault-Project-Key") != "pk" || r.URL.Query().Get("device_serial") != "SN1" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	conf := "project-key = \"pk\"\ndevice-serial = \"SN1\"\nhardware-version = \"evt\"\nsoftware-type = \"linux\"\napi-url = \"" + srv.URL + "\"\n"
	write(t, dir, "etc/tandem/memfault.toml", conf)
	if r := run(t, nil, "--root", dir, "memfault", "poll", "--once"); r.code != 0 || lastLine(r.stdout) != "idle" {
		t.Fatalf("memfault poll --once: %+v", r)
	}
	// memfault ddi speaks DDI to ddi-url with tenant default and the project key as gateway token.
	mf := ddiserver.New(t, ddiserver.Options{Tenant: "default", GatewayToken: "pk"})
	write(t, dir, "etc/tandem/memfault.toml", conf+"ddi-url = \""+mf.URL+"\"\n")
	if r := run(t, nil, "--root", dir, "memfault", "ddi", "--once"); r.code != 0 || lastLine(r.stdout) != "idle" {
		t.Fatalf("memfault ddi --once: %+v", r)
	}
	if n := len(mf.Requests()); n != 1 {
		t.Fatalf("%d DDI requests, want 1", n)
	}
	write(t, dir, "etc/tandem/memfault.toml", "project-key = \"pk\"\n")
	if r := run(t, nil, "--root", dir, "memfault", "poll", "--once"); r.code != ExitConfig || !strings.Contains(r.stderr, "device-serial is required") {
		t.Fatalf("bad configuration: %+v", r)
	}
}

// TestHawkbitServerURL: a server URL without a usable port is a
// configuration error (exit 3) before any request. Issue 11, hardening 10.
func TestHawkbitServerURL(t *testing.T) {
	dir := newSim(t, "grub")
	write(t, dir, "etc/tandem/hawkbit.toml", "server = \"http://127.0.0.1:\"\ncontroller-id = \"dev-9\"\n")
	if r := run(t, nil, "--root", dir, "hawkbit", "--once"); r.code != ExitConfig || !strings.Contains(r.stderr, "empty port") {
		t.Fatalf("server without a port: %+v", r)
	}
}
