package rootfs

import (
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PauseOps are the kinds of mutating file operation a test pause can name.
var PauseOps = []string{"any", "open", "write", "fsync", "rename", "remove", "mkdir", "syncdir", "chattr", "run"}

// WithPause wraps fsys for the real-boot power-cut tests (docs/testing.md):
// spec "OP:N" (e.g. "rename:2") stops the process just before the N-th
// operation of kind OP: it prints one line
//
//	tandem: test pause before rename #2 (/boot/efi/tandem/secondary.grubenv.new)
//
// to w and then sleeps forever, so that the test can cut the power (kill
// QEMU) at exactly that point. OP "any" counts every mutating operation.
// This is a test hook, set through TANDEM_TEST_PAUSE_AT; it never changes
// what is written.
func WithPause(fsys FS, spec string, w io.Writer) (FS, error) {
	op, n, ok := strings.Cut(spec, ":")
	num, err := strconv.Atoi(n)
	if !ok || err != nil || num < 1 || !slices.Contains(PauseOps, op) {
		return nil, fmt.Errorf("pause point %q: want OP:N with N ≥ 1 and OP one of %s", spec, strings.Join(PauseOps, ", "))
	}
	return &pauseFS{FS: fsys, op: op, at: num, w: w, seen: map[string]int{}}, nil
}

type pauseFS struct {
	FS
	op   string
	at   int
	w    io.Writer
	seen map[string]int
}

// point counts one operation and pauses forever at the chosen one.
func (p *pauseFS) point(op, name string) {
	p.seen[op]++
	p.seen["any"]++
	if p.seen[p.op] == p.at && (p.op == op || p.op == "any") {
		fmt.Fprintf(p.w, "tandem: test pause before %s #%d (%s)\n", p.op, p.at, name)
		for {
			time.Sleep(time.Hour)
		}
	}
}

func (p *pauseFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	p.point("open", name)
	f, err := p.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &pauseFile{File: f, p: p, name: name}, nil
}

func (p *pauseFS) Rename(oldname, newname string) error {
	p.point("rename", oldname)
	return p.FS.Rename(oldname, newname)
}

func (p *pauseFS) Remove(name string) error {
	p.point("remove", name)
	return p.FS.Remove(name)
}

func (p *pauseFS) MkdirAll(name string, perm fs.FileMode) error {
	p.point("mkdir", name)
	return p.FS.MkdirAll(name, perm)
}

func (p *pauseFS) SyncDir(name string) error {
	p.point("syncdir", name)
	return p.FS.SyncDir(name)
}

func (p *pauseFS) ClearImmutable(name string) error {
	p.point("chattr", name)
	return p.FS.ClearImmutable(name)
}

func (p *pauseFS) Run(cmd *exec.Cmd) error {
	p.point("run", cmd.Path)
	return p.FS.Run(cmd)
}

type pauseFile struct {
	File
	p    *pauseFS
	name string
}

func (f *pauseFile) Write(b []byte) (int, error) {
	f.p.point("write", f.name)
	return f.File.Write(b)
}

func (f *pauseFile) WriteAt(b []byte, off int64) (int, error) {
	f.p.point("write", f.name)
	return f.File.WriteAt(b, off)
}

func (f *pauseFile) Truncate(size int64) error {
	f.p.point("write", f.name)
	return f.File.Truncate(size)
}

func (f *pauseFile) Sync() error {
	f.p.point("fsync", f.name)
	return f.File.Sync()
}
