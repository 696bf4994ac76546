package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"github.com/tandem-ota/tandem/internal/state"
)

// The simulated data partition and system image (docs/simulator.md, "State").
const (
	// DataFolder (under the device directory) stands for the data
	// partition; each boot "mounts" it by a symbolic link at the configured
	// mount point. Remove it to simulate a data partition that cannot be
	// mounted.
	DataFolder = ".tandem-sim-data"
	// ImageFolder is the read-only system image: what the root holds at a
	// boot with the overlay discarded, and where persistent paths are
	// seeded from. It is taken at the first boot that finds state
	// configured (for `sim new --state`, the factory tree).
	ImageFolder = ".tandem-sim-image"
)

// UpperMarker (under the device directory) is the simulator's record of
// the persisted overlay of the running boot: the device-directory-relative
// path of the upper directory on the data folder that the boot's writes to
// the root belong to (overlay = "persist"). The next boot moves the root's
// changes there before it resets the root (captureUpper).
const UpperMarker = ".tandem-sim-upper"

// outsideRoot are the top-level names of a device directory that are not
// part of the root file system's overlay: the simulator's own files, the
// slots, the boot partition and the kernel's file systems.
var outsideRoot = []string{device.SimMarker[1:], DataFolder, ImageFolder, UpperMarker, "slots", "boot", "proc", "run", "sys"}

// bootState runs the mount plan of the boot of group as folder operations,
// the state transitions through fsys (a file layer that may cut the power),
// and writes the boot report (state.BootReportPath) as tandem init does. A
// device without state configuration is left as it is. A plan that fails
// boots degraded (the overlay discarded, the failure in the report), as
// tandem init does; only a power cut is an error.
func bootState(root string, fsys rootfs.FS, cfg *config.Config, group string) ([]string, error) {
	c, err := state.Load(fsys)
	if err != nil {
		return nil, err
	}
	if !c.Managed() {
		return nil, nil
	}
	d, err := device.Open(device.Options{Root: root})
	if err != nil {
		return nil, err
	}
	dflt, err := d.Flow.Default()
	if err != nil {
		return nil, fmt.Errorf("state: the default group: %w", err)
	}
	image := filepath.Join(root, ImageFolder)
	if _, err := os.Stat(image); rootfs.IsNotExist(err) {
		if err := copyRoot(root, image); err != nil {
			return nil, fmt.Errorf("state: take the system image: %w", err)
		}
	}
	m := &simMounter{root: root, image: image, mount: c.Data.Mount}
	if err := m.captureUpper(); err != nil {
		return nil, fmt.Errorf("state: keep the persisted overlay's writes: %w", err)
	}
	in := state.Input{Data: state.DataMissing, Booting: group, Default: dflt, DataDir: cfg.DataDir}
	store := &state.Store{FS: fsys, Mount: c.Data.Mount, KeepOnReset: []string{cfg.DataDir}}
	rep := state.BootReport{Status: state.BootOK, Overlay: state.OverlayDisabled, Actions: []string{}}
	if fi, err := os.Stat(filepath.Join(root, DataFolder)); err == nil && fi.IsDir() {
		in.Data = state.DataMounted
		rep.Device = c.Data.DeviceName()
		// Mount first: the journal is part of what the boot finds.
		if err := mountData(root, c.Data.Mount); err != nil {
			return nil, err
		}
		switch l, err := store.Load(); {
		case err == nil:
			in.Layout = &l
		case !errors.Is(err, state.ErrNoLayout):
			return nil, err
		}
	}
	plan := state.Plan(c, in)
	for _, a := range plan {
		rep.Actions = append(rep.Actions, a.String())
		switch a.Kind {
		case state.ActOverlay:
			rep.Overlay = a.Mode
		case state.ActWarn:
			rep.Status, rep.Error = state.BootDegraded, a.Message
		}
	}
	if _, err := state.Apply(plan, store, in.Layout, image, m); err != nil {
		if errors.Is(err, rootfs.ErrPowerCut) {
			return m.notes, fmt.Errorf("state: %w", err)
		}
		// As tandem init: undo (the root back to the image), boot degraded.
		m.notes = append(m.notes, fmt.Sprintf("state: %v; booting with the overlay discarded", err))
		rep = state.BootReport{Status: state.BootDegraded, Error: err.Error(), Device: rep.Device, Overlay: state.OverlayDiscard, Actions: []string{"overlay discard on /"}}
		_ = os.Remove(filepath.Join(root, UpperMarker))
		if err := resetRoot(root, image); err != nil {
			return m.notes, err
		}
	}
	return m.notes, state.WriteBootReport(root, rep)
}

// simMounter performs the mounts of a plan with folders and links.
type simMounter struct {
	root, image, mount string
	notes              []string
}

func (m *simMounter) Do(a state.Action) error {
	switch a.Kind {
	case state.ActWarn:
		m.notes = append(m.notes, "state: "+a.Message)
	case state.ActMkfs, state.ActFsck, state.ActMount:
		// The folder is the file system; it was "mounted" before the plan.
	case state.ActOverlay:
		switch a.Mode {
		case state.OverlayDiscard:
			return resetRoot(m.root, m.image)
		case state.OverlayPersist:
			return m.applyUpper(a)
		}
	case state.ActBind:
		return m.bind(a)
	default:
		return fmt.Errorf("the simulator cannot do %s", a.Kind)
	}
	return nil
}

// bind stands for a bind mount: a relative symbolic link at the target
// into the data folder (writes go straight to the data partition, as
// through a bind mount).
func (m *simMounter) bind(a state.Action) error {
	rel, ok := strings.CutPrefix(a.Source, m.mount+"/")
	if !ok {
		return fmt.Errorf("bind source %s is not on the data partition", a.Source)
	}
	target := rootfs.Join(m.root, a.Target)
	if err := os.RemoveAll(target); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	link, err := filepath.Rel(filepath.Dir(target), filepath.Join(m.root, DataFolder, rel))
	if err != nil {
		return err
	}
	return os.Symlink(link, target)
}

// mountData links the mount point to the data folder.
func mountData(root, mount string) error {
	p := rootfs.Join(root, mount)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	link, err := filepath.Rel(filepath.Dir(p), filepath.Join(root, DataFolder))
	if err != nil {
		return err
	}
	_ = os.Remove(p)
	return os.Symlink(link, p)
}

// resetRoot discards every write to the root: the root's entries (but
// those outside it) are replaced by the system image's.
func resetRoot(root, image string) error {
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !slices.Contains(outsideRoot, e.Name()) {
			if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
				return err
			}
		}
	}
	return copyTree(image, root)
}

// copyRoot copies the root's entries (but those outside it) to dst.
func copyRoot(root, dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !slices.Contains(outsideRoot, e.Name()) {
			if err := copyTree(filepath.Join(root, e.Name()), filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyTree copies files, directories and symbolic links with their modes;
// dst may exist (a directory is merged into).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			return os.Chmod(out, fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, fi.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(out, fi.Mode().Perm())
		}
		return nil
	})
}
