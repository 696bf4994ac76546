package bootflow

import (
	"fmt"
	"path"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/autoboot"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Raspberry Pi tryboot flow (rule table in docs/boot-flows.md):
//
//	<boot-dir>/autoboot.txt  [all] boot_partition      the default group's partition
//	                         [tryboot] boot_partition  the partition the firmware starts when the
//	                                                   one-shot tryboot flag is set
//	/run/tandem/tryboot      the group to try; volatile like the firmware flag,
//	                         turned into `reboot "0 tryboot"` by `system reboot`
//
// The firmware clears its tryboot flag itself, so a trial is one boot; it
// cannot count attempts.
const RPiTrybootMarker = "/run/tandem/tryboot"

type rpiFlow struct {
	fsys       rootfs.FS
	file       string
	groups     []string
	partitions map[string]int
}

func newRPi(bf config.BootFlow, groups []string, fsys rootfs.FS) *rpiFlow {
	return &rpiFlow{fsys: fsys, file: path.Join(bf.BootDir, "autoboot.txt"), groups: groups, partitions: bf.Partitions}
}

func (r *rpiFlow) Name() string { return config.FlowRPiTryboot }

func (r *rpiFlow) read() (*autoboot.File, error) {
	b, err := r.fsys.ReadFile(r.file)
	if err != nil {
		return nil, stateErr(r.fsys.Path(r.file), err)
	}
	f, err := autoboot.Parse(b)
	if err != nil {
		return nil, stateErr(r.fsys.Path(r.file), err)
	}
	return f, nil
}

func (r *rpiFlow) groupOf(part int) (string, bool) { return groupWith(r.partitions, part) }

func (r *rpiFlow) Default() (string, error) {
	f, err := r.read()
	if err != nil {
		return "", err
	}
	all, _, err := f.Partitions()
	if err != nil {
		return "", stateErr(r.fsys.Path(r.file), err)
	}
	g, ok := r.groupOf(all)
	if !ok {
		return "", stateErr(r.fsys.Path(r.file), fmt.Errorf("[all] boot_partition=%d is no configured group's partition", all))
	}
	return g, nil
}

// TryNext points [tryboot] at group (leaving [all] alone, so either version
// of the file boots the default without the flag) and records the request
// for the reboot.
func (r *rpiFlow) TryNext(group string) error {
	if err := checkGroup(r.groups, group); err != nil {
		return err
	}
	f, err := r.read()
	if err != nil {
		return err
	}
	if _, try, _ := f.Partitions(); try != r.partitions[group] {
		if err := f.Set("tryboot", "boot_partition", fmt.Sprint(r.partitions[group])); err != nil {
			return err
		}
		if err := rootfs.WriteAtomic(r.fsys, r.file, f.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if err := r.fsys.MkdirAll(path.Dir(RPiTrybootMarker), 0o755); err != nil {
		return err
	}
	return rootfs.WriteAtomic(r.fsys, RPiTrybootMarker, []byte(group+"\n"), 0o644)
}

func (r *rpiFlow) CancelTry() error {
	if _, err := r.fsys.Stat(RPiTrybootMarker); rootfs.IsNotExist(err) {
		return nil
	}
	if err := r.fsys.Remove(RPiTrybootMarker); err != nil && !rootfs.IsNotExist(err) {
		return err
	}
	return r.fsys.SyncDir(path.Dir(RPiTrybootMarker))
}

// Commit rewrites autoboot.txt with group in [all] and the previous default
// in [tryboot].
func (r *rpiFlow) Commit(group string) error {
	if err := checkGroup(r.groups, group); err != nil {
		return err
	}
	f, err := r.read()
	if err != nil {
		return err
	}
	all, _, err := f.Partitions()
	if err != nil {
		return stateErr(r.fsys.Path(r.file), err)
	}
	try := all
	if all == r.partitions[group] {
		try = r.otherPartition(group)
	}
	if err := f.Set("all", "boot_partition", fmt.Sprint(r.partitions[group])); err != nil {
		return err
	}
	if err := f.Set("tryboot", "boot_partition", fmt.Sprint(try)); err != nil {
		return err
	}
	if err := rootfs.WriteAtomic(r.fsys, r.file, f.Bytes(), 0o644); err != nil {
		return err
	}
	return r.CancelTry()
}

func (r *rpiFlow) otherPartition(group string) int {
	for _, g := range r.groups {
		if g != group {
			return r.partitions[g]
		}
	}
	return r.partitions[group]
}

// RebootArgs asks the firmware for tryboot when a try is pending.
func (r *rpiFlow) RebootArgs() ([]string, error) {
	if _, err := r.fsys.Stat(RPiTrybootMarker); err != nil {
		if rootfs.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	return []string{"0 tryboot"}, nil
}

// Trial reports the recorded tryboot request.
func (r *rpiFlow) Trial() (string, int, error) {
	b, err := r.fsys.ReadFile(RPiTrybootMarker)
	if rootfs.IsNotExist(err) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	g := strings.TrimSpace(string(b))
	if checkGroup(r.groups, g) != nil {
		return "", 0, nil
	}
	return g, 1, nil
}
