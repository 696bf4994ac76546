// Package hooks runs the user's hook programs:
// <hooks-dir>/<operation>/<stage>/<NN-name>, in name order, each with the
// arguments "<operation> <stage>" and the documented environment
// (docs/hooks.md). A hook that exits non-zero aborts the operation, and so
// does an executable hook that root would not trust (filetrust.Check: owned
// by another user, writable by others, in such a directory, or a symbolic
// link to such a file): it is refused, not run.
package hooks

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"slices"

	"github.com/tandem-ota/tandem/internal/cmdout"
	"github.com/tandem-ota/tandem/internal/filetrust"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Run runs the hooks of one operation stage. env holds extra KEY=VALUE pairs.
// A missing directory means no hooks.
func Run(fsys rootfs.FS, hooksDir, operation, stage string, env ...string) error {
	dir := path.Join(hooksDir, operation, stage)
	ents, err := os.ReadDir(fsys.Path(dir))
	if rootfs.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hooks %s: %w", dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, name := range names {
		p := fsys.Path(path.Join(dir, name))
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			continue // not executable: documentation or a disabled hook
		}
		// A hook runs as root: refuse one that anybody else could change.
		if _, err := filetrust.Check(p); err != nil {
			return fmt.Errorf("hook %s/%s refused: %w", dir, name, err)
		}
		var out bytes.Buffer
		cmd := exec.Command(p, operation, stage)
		cmd.Env = append(append(os.Environ(), "TANDEM_ROOT="+fsys.Path("/")), env...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("hook %s/%s failed: %w: %s", dir, name, err, cmdout.LastLine(out.String()))
		}
	}
	return nil
}
