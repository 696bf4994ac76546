package state

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tandem-ota/tandem/internal/rootfs"
)

const testMount = "/data"

// tree reads the host tree at dir: relative path → content ("/" for a directory).
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			m[rel] = "/"
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("read tree %s: %v", dir, err)
	}
	return m
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	committedFiles = map[string]string{"etc/hostname": "h1\n", "var/lib/app/db": "schema 1\n", "var/lib/app/sub/x": "x"}
	sharedFiles    = map[string]string{"var/log/app.log": "line 1\n"}
)

// fixture is a data partition with a committed state (group a) and a
// shared one; trial: also a snapshot for group b that b "migrated".
func fixture(t *testing.T, trial bool) (root string, l Layout) {
	t.Helper()
	root = t.TempDir()
	s := &Store{FS: rootfs.NewOS(root), Mount: testMount}
	l, err := s.Format()
	if err != nil {
		t.Fatal(err)
	}
	if l, err = s.Adopt(l, "a"); err != nil {
		t.Fatal(err)
	}
	writeTree(t, s.FS.Path(s.gen(l.Committed.Gen)), committedFiles)
	writeTree(t, s.FS.Path(s.gen(l.Shared)), sharedFiles)
	if trial {
		if l, err = s.Snapshot(l, "b"); err != nil {
			t.Fatal(err)
		}
		writeTree(t, s.FS.Path(s.gen(l.Trial.Gen)), migrated)
	}
	return root, l
}

// migrated is what the trial did to its copy.
var migrated = map[string]string{"var/lib/app/db": "schema 2\n", "var/lib/app/new": "added by b"}

func genTree(t *testing.T, root string, id int) map[string]string {
	t.Helper()
	s := &Store{FS: rootfs.NewOS(root), Mount: testMount}
	return tree(t, s.FS.Path(s.gen(id)))
}

func withDirs(files map[string]string) map[string]string {
	m := map[string]string{".": "/"}
	for rel, c := range files {
		m[rel] = c
		for d := filepath.Dir(rel); d != "."; d = filepath.Dir(d) {
			m[d] = "/"
		}
	}
	return m
}

func merged(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

// op is one transition under test: run it, and check a layout read after
// a cut (done: the transition took effect).
type op struct {
	name  string
	trial bool
	run   func(s *Store, l Layout) error
	// check returns an error when the layout (old or new) is inconsistent.
	check func(t *testing.T, root string, l Layout) (done bool, err error)
}

func sameTree(t *testing.T, root string, id int, want map[string]string) error {
	if got := genTree(t, root, id); !reflect.DeepEqual(got, withDirs(want)) {
		return fmt.Errorf("generation %d holds %v, want %v", id, got, withDirs(want))
	}
	return nil
}

var ops = []op{
	{name: "request-reset", run: func(s *Store, _ Layout) error { _, err := s.RequestReset(true); return err },
		check: func(t *testing.T, root string, l Layout) (bool, error) {
			return l.Reset != nil, sameTree(t, root, l.Committed.Gen, committedFiles)
		}},
	{name: "reset", run: func(s *Store, l Layout) error {
		s.KeepOnReset = []string{"/var/log"} // as tandem's data directory
		l.Reset = &ResetRequest{}
		_, err := s.ApplyReset(l)
		return err
	}, check: func(t *testing.T, root string, l Layout) (bool, error) {
		if l.Committed.Gen == 1 { // the old state, the reset not done
			if err := sameTree(t, root, l.Shared, sharedFiles); err != nil {
				return false, err
			}
			return false, sameTree(t, root, l.Committed.Gen, committedFiles)
		}
		if l.Reset != nil || l.Backup != nil || l.Trial != nil {
			return true, fmt.Errorf("reset left %+v", l)
		}
		if err := sameTree(t, root, l.Shared, sharedFiles); err != nil {
			return true, err
		}
		return true, sameTree(t, root, l.Committed.Gen, nil)
	}},
	{name: "reset-keep-backup", run: func(s *Store, l Layout) error {
		l.Reset = &ResetRequest{KeepBackup: true}
		_, err := s.ApplyReset(l)
		return err
	}, check: func(t *testing.T, root string, l Layout) (bool, error) {
		if l.Backup == nil {
			return false, sameTree(t, root, l.Committed.Gen, committedFiles)
		}
		if err := sameTree(t, root, l.Backup.Gen, committedFiles); err != nil {
			return true, err
		}
		if err := sameTree(t, root, l.Backup.Shared, sharedFiles); err != nil {
			return true, err
		}
		return true, sameTree(t, root, l.Committed.Gen, nil)
	}},
	{name: "snapshot", run: func(s *Store, l Layout) error { _, err := s.Snapshot(l, "b"); return err },
		check: func(t *testing.T, root string, l Layout) (bool, error) {
			if err := sameTree(t, root, l.Committed.Gen, committedFiles); err != nil {
				return l.Trial != nil, err
			}
			if l.Trial == nil {
				return false, nil
			}
			if l.Trial.Group != "b" {
				return true, fmt.Errorf("trial for %q", l.Trial.Group)
			}
			return true, sameTree(t, root, l.Trial.Gen, committedFiles)
		}},
	{name: "commit", trial: true, run: func(s *Store, l Layout) error { _, err := s.Commit(l); return err },
		check: func(t *testing.T, root string, l Layout) (bool, error) {
			if l.Trial != nil {
				if err := sameTree(t, root, l.Committed.Gen, committedFiles); err != nil {
					return false, err
				}
				return false, sameTree(t, root, l.Trial.Gen, merged(committedFiles, migrated))
			}
			if l.Committed.Group != "b" {
				return true, fmt.Errorf("committed group %q, want b", l.Committed.Group)
			}
			return true, sameTree(t, root, l.Committed.Gen, merged(committedFiles, migrated))
		}},
	{name: "rollback", trial: true, run: func(s *Store, l Layout) error { _, err := s.Rollback(l); return err },
		check: func(t *testing.T, root string, l Layout) (bool, error) {
			if err := sameTree(t, root, l.Committed.Gen, committedFiles); err != nil {
				return l.Trial == nil, err
			}
			if l.Trial != nil {
				return false, sameTree(t, root, l.Trial.Gen, merged(committedFiles, migrated))
			}
			return true, nil
		}},
}

// TestPowerCut cuts every transition at each of its cut points (every
// write, fsync, directory fsync, rename and removal through the file
// layer) in the three cut modes, and checks that the data partition then
// holds a consistent state — the old one or the new one, never a mix — and
// that the next boot completes the transition or finds it done.
func TestPowerCut(t *testing.T) {
	total := 0
	for _, o := range ops {
		for _, mode := range []rootfs.CutMode{rootfs.CutDrop, rootfs.CutTear, rootfs.CutKeep} {
			t.Run(o.name+"/"+mode.String(), func(t *testing.T) {
				points := 0
				for n := 1; ; n++ {
					root, l := fixture(t, o.trial)
					sim := rootfs.NewSim(root, rootfs.SimOptions{CutAt: n, Mode: mode})
					err := o.run(&Store{FS: sim, Mount: testMount}, l)
					if err == nil {
						points = n - 1
						if n == 1 {
							t.Fatalf("%s has no cut point", o.name)
						}
						// Done means durable: the power fails right after.
						if err := sim.PowerOff(); err != nil {
							t.Fatal(err)
						}
						after, err := (&Store{FS: rootfs.NewOS(root), Mount: testMount}).Load()
						if err != nil {
							t.Fatalf("after power off: %v", err)
						}
						if done, err := o.check(t, root, after); !done || err != nil {
							t.Fatalf("after power off: done %v, %v", done, err)
						}
						break
					}
					if !errors.Is(err, rootfs.ErrPowerCut) {
						t.Fatalf("cut %d: %v", n, err)
					}
					s := &Store{FS: rootfs.NewOS(root), Mount: testMount}
					after, err := s.Load()
					if err != nil {
						t.Fatalf("cut %d: the journal: %v", n, err)
					}
					done, err := o.check(t, root, after)
					if err != nil {
						t.Fatalf("cut %d (%s): inconsistent: %v", n, sim.Cut(), err)
					}
					// The next boot: garbage collected, the transition redone if it did not take.
					if err := s.Collect(after); err != nil {
						t.Fatalf("cut %d: collect: %v", n, err)
					}
					if !done {
						if err := o.run(s, after); err != nil {
							t.Fatalf("cut %d: redo: %v", n, err)
						}
						after, _ = s.Load()
						if done, err := o.check(t, root, after); !done || err != nil {
							t.Fatalf("cut %d: after redo: done %v, %v", n, done, err)
						}
					}
					checkNoGarbage(t, root, after)
				}
				total += points
				t.Logf("%s, mode %s: %d cut points", o.name, mode, points)
			})
		}
	}
	t.Logf("%d cut points in all", total)
}

// checkNoGarbage: after a collect, only the named generations are left.
func checkNoGarbage(t *testing.T, root string, l Layout) {
	t.Helper()
	s := &Store{FS: rootfs.NewOS(root), Mount: testMount}
	if err := s.Collect(l); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(s.FS.Path(s.dir() + "/" + GenDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(l.Referenced()) {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("generations %v, journal names %v", names, l.Referenced())
	}
}
