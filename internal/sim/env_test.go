package sim

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

// TestCutFromEnv checks the simulator's power-cut switch.
func TestCutFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if at, mode, err := CutFromEnv(env(nil)); at != 0 || mode != 0 || err != nil {
		t.Errorf("unset: %d, %v, %v", at, mode, err)
	}
	want, err := rootfs.ParseCutMode("tear")
	if err != nil {
		t.Fatal(err)
	}
	if at, mode, err := CutFromEnv(env(map[string]string{"TANDEM_SIM_CUT": "3", "TANDEM_SIM_CUT_MODE": "tear"})); at != 3 || mode != want || err != nil {
		t.Errorf("3, tear: %d, %v, %v", at, mode, err)
	}
	for _, m := range []map[string]string{{"TANDEM_SIM_CUT": "0"}, {"TANDEM_SIM_CUT": "x"}, {"TANDEM_SIM_CUT_MODE": "melt"}} {
		if _, _, err := CutFromEnv(env(m)); err == nil {
			t.Errorf("%v: no error", m)
		}
	}
}

// TestServe checks that sim serve answers range requests from the directory.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.tandem"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go Serve(ln, dir)
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/b.tandem", nil)
	req.Header.Set("Range", "bytes=2-4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusPartialContent || string(b) != "234" {
		t.Errorf("range: %s %q", resp.Status, b)
	}
}
