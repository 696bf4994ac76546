package device_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/sim"
	"github.com/tandem-ota/tandem/internal/state"
)

// TestTrialRefusedWithoutSpace: a trial is refused (ErrRefused, nothing
// recorded, the boot flow untouched) when the data partition cannot hold the
// snapshot of the committed state's non-shared paths; shared paths do not
// count; a device without state is not checked (issue 12, "refuse the trial
// before it starts, with a clear error").
func TestTrialRefusedWithoutSpace(t *testing.T) {
	tmp := t.TempDir()
	cfg := filepath.Join(tmp, "10-app.toml")
	toml := "[data-partition]\nlabel = \"data\"\n\n[persist.\"/var/lib/app\"]\n\n[persist.\"/var/log\"]\nshared = true\n"
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "dev")
	if err := sim.New(dir, sim.Options{BootFlow: "grub", State: []string{cfg}}); err != nil {
		t.Fatal(err)
	}
	fsys := rootfs.NewOS(dir)
	c, err := state.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	s := &state.Store{FS: fsys, Mount: c.Data.Mount}
	l, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	put := func(gen int, p string, n int) {
		t.Helper()
		f := fsys.Path(s.GenPath(gen, p)) + "/big"
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put(l.Committed.Gen, "/var/lib/app", 8<<20) // snapshotted: 8 MiB
	put(l.Shared, "/var/log", 64<<20)           // shared: not counted

	d, err := device.Open(device.Options{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	var asked string
	d.StateFree = func(dir string) (int64, error) { asked = dir; return 10 << 20, nil } // < 8 + 0.8 + 4 MiB
	err = d.TryNext("b")
	if !errors.Is(err, device.ErrRefused) || !errors.Is(err, state.ErrNoSpace) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "shared = true") {
		t.Fatalf("a full data partition: err %v", err)
	}
	if asked != fsys.Path(c.Data.Mount) {
		t.Errorf("free space asked of %q, want the data partition %q", asked, fsys.Path(c.Data.Mount))
	}
	if st, err := d.LoadState(); err != nil || st.Trial != nil {
		t.Fatalf("a refused trial was recorded: %+v %v", st, err)
	}
	if st, err := d.Status(); err != nil || st.Trial != "" {
		t.Fatalf("a refused trial reached the boot flow: %+v %v", st, err)
	}
	d.StateFree = func(string) (int64, error) { return 13 << 20, nil } // 8 + 0.8 + 4 MiB fit
	if err := d.TryNext("b"); err != nil {
		t.Fatalf("enough space: %v", err)
	}

	// Without state configuration nothing is checked.
	plain := filepath.Join(tmp, "plain")
	if err := sim.New(plain, sim.Options{BootFlow: "grub"}); err != nil {
		t.Fatal(err)
	}
	d2, err := device.Open(device.Options{Root: plain})
	if err != nil {
		t.Fatal(err)
	}
	d2.StateFree = func(string) (int64, error) { return 0, nil }
	if err := d2.TryNext("b"); err != nil {
		t.Fatalf("a device without state: %v", err)
	}
}
