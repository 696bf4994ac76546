package state

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// ConfigDir is the device path of the state configuration: every *.toml
// file in it, read in name order.
const ConfigDir = "/etc/tandem/state.d"

// Limits of the state configuration (it is read by the first process of
// the system, before anything else runs: it must stay small).
const (
	MaxFileSize = 64 << 10 // bytes per file
	MaxFiles    = 64       // *.toml files in ConfigDir
	MaxPaths    = 256      // persistent paths in all files
)

// Overlay modes: what the writable layer over the read-only system is.
const (
	OverlayDiscard  = "discard"  // tmpfs upper: clean every boot (the default)
	OverlayPersist  = "persist"  // upper on the data partition, one per boot group
	OverlayDisabled = "disabled" // no overlay: the system stays read-only
)

// Path kinds.
const (
	KindDirectory = "directory"
	KindFile      = "file"
)

// DefaultMount is where the data partition is mounted when the
// configuration does not say.
const DefaultMount = "/run/tandem/data"

// Config is the state configuration, merged from every file of ConfigDir.
type Config struct {
	// Files are the host paths of the files read, in order.
	Files []string
	// Data is the data partition; nil when no file declares one (then no
	// state is managed: every path is discarded or read-only).
	Data *DataPartition
	// Overlay is the overlay mode (OverlayDiscard when no file sets it).
	Overlay string
	// Paths are the persistent paths, sorted by path.
	Paths []Path
	// CommitWhenDegraded lets `tandem health` commit a trial although
	// tandem init booted it degraded (the state not set up); default false.
	CommitWhenDegraded bool
}

// DataPartition says where the state lives.
type DataPartition struct {
	// Exactly one of Partition (a number on system.toml's root-disk),
	// Label (a file system or partition label) and Device (a device path).
	Partition int
	Label     string
	Device    string
	// Mount is the device path where it is mounted (DefaultMount).
	Mount string
	// Filesystem, when set (e.g. "ext4"), is made on a partition that has
	// none on its first boot; when empty a blank partition is never touched.
	Filesystem string
	// Fsck: check the file system before mounting it (default true).
	Fsck bool
	// Grow: at boot, grow the partition to the end of its disk when it is
	// the last partition of a GPT disk with room after it, then its file
	// system (default false; only ever grows).
	Grow bool
}

// Path is one declared persistent path.
type Path struct {
	Path string // absolute device path, clean
	Kind string // KindDirectory or KindFile
	// Shared paths are not snapshotted for a trial: the trial and a
	// rollback see the same one (logs). tandem's own data directory is
	// always shared.
	Shared bool
	// File is the configuration file that declared it ("" when implicit).
	File string
}

// fileModel is one file of ConfigDir as written.
type fileModel struct {
	Overlay  *string              `toml:"overlay"`
	Degraded *bool                `toml:"commit-when-degraded"`
	Data     *dataModel           `toml:"data-partition"`
	Persist  map[string]pathModel `toml:"persist"`
}

type dataModel struct {
	Partition  *int    `toml:"partition"`
	Label      *string `toml:"label"`
	Device     *string `toml:"device"`
	Mount      *string `toml:"mount"`
	Filesystem *string `toml:"filesystem"`
	Fsck       *bool   `toml:"fsck"`
	Grow       *bool   `toml:"grow"`
}

type pathModel struct {
	Type   *string `toml:"type"`
	Shared bool    `toml:"shared"`
}

// Load reads every *.toml file of ConfigDir on fsys. A missing directory
// is no state configuration: a Config with Data nil. Errors are
// *config.Error ("file:line:col: what") wrapping config.ErrInvalid, or the
// error reading a file.
func Load(fsys rootfs.FS) (*Config, error) {
	dir := fsys.Path(ConfigDir)
	ents, err := os.ReadDir(dir)
	if rootfs.IsNotExist(err) {
		return &Config{Overlay: OverlayDiscard}, nil
	}
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".toml") && !e.IsDir() {
			files = append(files, e.Name())
		}
	}
	if len(files) > MaxFiles {
		return nil, &config.FileError{File: dir, Err: fmt.Errorf("%d configuration files: the limit is %d", len(files), MaxFiles)}
	}
	sort.Strings(files)
	docs := make([]File, 0, len(files))
	for _, name := range files {
		host := path.Join(dir, name)
		data, err := config.ReadSmall(host, MaxFileSize)
		if err != nil {
			return nil, err
		}
		docs = append(docs, File{Name: host, Data: data})
	}
	return Parse(docs)
}

// File is one configuration file's name and content.
type File struct {
	Name string
	Data []byte
}

// Parse decodes, merges and checks configuration files given in order.
// A setting (overlay, [data-partition]) may be made by one file only; a
// path may be declared once.
func Parse(files []File) (*Config, error) {
	c := &Config{Overlay: OverlayDiscard}
	var overlayFile, dataFile, degradedFile string
	seen := map[string]string{}
	for _, f := range files {
		if len(f.Data) > MaxFileSize {
			return nil, &config.FileError{File: f.Name, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}
		}
		var m fileModel
		doc, err := config.DecodeFile(f.Name, f.Data, &m)
		if err != nil {
			return nil, err
		}
		c.Files = append(c.Files, f.Name)
		if m.Overlay != nil {
			if overlayFile != "" {
				return nil, doc.Errorf([]string{"overlay"}, "already set in %s (set it in one file)", overlayFile)
			}
			overlayFile = f.Name
			switch *m.Overlay {
			case OverlayDiscard, OverlayPersist, OverlayDisabled:
				c.Overlay = *m.Overlay
			default:
				return nil, doc.Errorf([]string{"overlay"}, "%q: want discard, persist or disabled", *m.Overlay)
			}
		}
		if m.Degraded != nil {
			if degradedFile != "" {
				return nil, doc.Errorf([]string{"commit-when-degraded"}, "already set in %s (set it in one file)", degradedFile)
			}
			degradedFile, c.CommitWhenDegraded = f.Name, *m.Degraded
		}
		if m.Data != nil {
			if dataFile != "" {
				return nil, doc.Errorf([]string{"data-partition"}, "already set in %s (set it in one file)", dataFile)
			}
			dataFile = f.Name
			d, err := checkData(doc, m.Data)
			if err != nil {
				return nil, err
			}
			c.Data = d
		}
		names := mapKeys(m.Persist)
		slices.Sort(names)
		for _, p := range names {
			pm := m.Persist[p]
			key := []string{"persist", p}
			if err := checkPath(p); err != nil {
				return nil, doc.Errorf(key, "%v", err)
			}
			if prev, ok := seen[path.Clean(p)]; ok {
				return nil, doc.Errorf(key, "already declared in %s", prev)
			}
			seen[path.Clean(p)] = f.Name
			kind := KindDirectory
			if pm.Type != nil {
				kind = *pm.Type
				if kind != KindDirectory && kind != KindFile {
					return nil, doc.Errorf(append(key, "type"), "%q: want directory or file", kind)
				}
			}
			if len(seen) > MaxPaths {
				return nil, doc.Errorf(key, "more than %d persistent paths", MaxPaths)
			}
			c.Paths = append(c.Paths, Path{Path: path.Clean(p), Kind: kind, Shared: pm.Shared, File: f.Name})
		}
	}
	slices.SortFunc(c.Paths, func(a, b Path) int { return strings.Compare(a.Path, b.Path) })
	for i := 1; i < len(c.Paths); i++ {
		for j := range i {
			if rootfs.Under(c.Paths[i].Path, c.Paths[j].Path) {
				return nil, &config.FileError{File: c.Paths[i].File,
					Err: fmt.Errorf("persist %q is inside persist %q (declared in %s): declare one of them", c.Paths[i].Path, c.Paths[j].Path, c.Paths[j].File)}
			}
		}
	}
	if c.Data != nil {
		for _, p := range c.Paths {
			if rootfs.Under(p.Path, c.Data.Mount) || rootfs.Under(c.Data.Mount, p.Path) {
				return nil, &config.FileError{File: p.File, Err: fmt.Errorf("persist %q overlaps the data partition's mount point %s", p.Path, c.Data.Mount)}
			}
		}
	}
	if c.Data == nil && len(c.Paths) > 0 {
		return nil, &config.FileError{File: c.Paths[0].File,
			Err: errors.New("persistent paths are declared but no [data-partition]: declare where the state lives")}
	}
	return c, nil
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// forbidden are the paths that cannot be persistent: the mounts init makes
// itself, and the root.
var forbidden = []string{"/proc", "/sys", "/dev", "/run"}

// checkPath checks a declared persistent path.
func checkPath(p string) error {
	if err := checkDevicePath(p); err != nil {
		return err
	}
	if p == "/" {
		return errors.New("the root cannot be persistent (use overlay = \"persist\")")
	}
	for _, f := range forbidden {
		if rootfs.Under(p, f) {
			return fmt.Errorf("%s is a file system init mounts itself; it cannot be persistent", f)
		}
	}
	return nil
}

// checkDevicePath: absolute, clean, no control characters, bounded.
func checkDevicePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > 1024:
		return errors.New("path longer than 1024 bytes")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is not an absolute path", p)
	case path.Clean(p) != p:
		return fmt.Errorf("%q is not clean (write %q)", p, path.Clean(p))
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%q holds a control character", p)
		}
	}
	return nil
}

func checkData(doc *config.Doc, m *dataModel) (*DataPartition, error) {
	key := []string{"data-partition"}
	d := &DataPartition{Mount: DefaultMount, Fsck: true}
	n := 0
	if m.Partition != nil {
		n++
		d.Partition = *m.Partition
		if d.Partition < 1 || d.Partition > 128 {
			return nil, doc.Errorf(append(key, "partition"), "%d: want 1 to 128", d.Partition)
		}
	}
	if m.Label != nil {
		n++
		d.Label = *m.Label
		if d.Label == "" || len(d.Label) > 64 || strings.ContainsAny(d.Label, "/\x00\n") {
			return nil, doc.Errorf(append(key, "label"), "%q: want 1 to 64 bytes without / or control characters", d.Label)
		}
	}
	if m.Device != nil {
		n++
		d.Device = *m.Device
		if err := checkDevicePath(d.Device); err != nil {
			return nil, doc.Errorf(append(key, "device"), "%v", err)
		}
	}
	if n != 1 {
		return nil, doc.Errorf(key, "give exactly one of partition, label and device")
	}
	if m.Mount != nil {
		d.Mount = *m.Mount
		if err := checkDevicePath(d.Mount); err != nil {
			return nil, doc.Errorf(append(key, "mount"), "%v", err)
		}
		if d.Mount == "/" {
			return nil, doc.Errorf(append(key, "mount"), "the data partition cannot be mounted on /")
		}
	}
	if m.Filesystem != nil {
		d.Filesystem = *m.Filesystem
		switch d.Filesystem {
		case "ext4", "btrfs", "xfs", "f2fs":
		default:
			return nil, doc.Errorf(append(key, "filesystem"), "%q: want ext4, btrfs, xfs or f2fs", d.Filesystem)
		}
	}
	if m.Fsck != nil {
		d.Fsck = *m.Fsck
	}
	if m.Grow != nil {
		d.Grow = *m.Grow
	}
	return d, nil
}

// Managed reports whether the configuration declares a data partition.
func (c *Config) Managed() bool { return c.Data != nil }

// WithDataDir returns the paths plus tandem's own data directory (dataDir,
// from system.toml) as a shared directory, unless it is declared already or
// lies on the data partition itself: tandem's slot database must survive
// reboots and must not roll back with a trial's state.
func (c *Config) WithDataDir(dataDir string) []Path {
	paths := slices.Clone(c.Paths)
	if c.Data == nil || dataDir == "" || rootfs.Under(dataDir, c.Data.Mount) {
		return paths
	}
	for i, p := range paths {
		if rootfs.Under(dataDir, p.Path) {
			if p.Path == dataDir {
				paths[i].Shared = true
			}
			return paths
		}
	}
	paths = append(paths, Path{Path: path.Clean(dataDir), Kind: KindDirectory, Shared: true})
	slices.SortFunc(paths, func(a, b Path) int { return strings.Compare(a.Path, b.Path) })
	return paths
}
