package cli

import (
	"encoding/json"
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
