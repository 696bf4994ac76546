package bootflow

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Rugix GRUB flow (rugix-grub): the files Rugix Ctrl's GRUB boot flow keeps
// on the config partition (boot-dir is where it is mounted), so that a
// device that ran Rugix Ctrl keeps its GRUB script (rule table in
// docs/boot-flows.md):
//
//	rugpi/primary.grubenv, rugpi/secondary.grubenv   rugpi_bootpart=<2|3>, the default group's boot partition
//	rugpi/primary.grubenv.sha1, ...secondary...sha1  "<sha1>  /rugpi/<name>": GRUB loads a copy only
//	                                                 when `hashsum --check` passes
//	rugpi/boot_spare.grubenv                         rugpi_boot_spare=true: boot the other partition
//	                                                 once; GRUB writes false before it boots it
//
// GRUB loads the secondary copy, then the primary (which wins). A commit
// writes the secondary copy and its checksum, then the primary and its
// checksum, each file new + fsync + rename: a power cut leaves at least one
// copy whose checksum passes, naming the old or the new default. The trial
// is one boot of the other group; Rugix's GRUB script cannot count.
const (
	RugixDir          = "rugpi"
	RugixPrimary      = "primary.grubenv"
	RugixSecondary    = "secondary.grubenv"
	RugixSpare        = "boot_spare.grubenv"
	RugixVarBootpart  = "rugpi_bootpart"
	RugixVarBootSpare = "rugpi_boot_spare"
)

type rugixGrubFlow struct {
	fsys       rootfs.FS
	dir        string
	groups     []string
	partitions map[string]int
}

func newRugixGrub(bf config.BootFlow, groups []string, fsys rootfs.FS) *rugixGrubFlow {
	return &rugixGrubFlow{fsys: fsys, dir: bf.BootDir, groups: groups, partitions: bf.Partitions}
}

func (r *rugixGrubFlow) Name() string { return config.FlowRugixGrub }

func (r *rugixGrubFlow) file(name string) string { return path.Join(r.dir, RugixDir, name) }

// RugixSum is the .sha1 file of a grubenv copy named name under rugpi/.
func RugixSum(name string, block []byte) []byte {
	sum := sha1.Sum(block)
	return []byte(hex.EncodeToString(sum[:]) + "  /" + RugixDir + "/" + name + "\n")
}

// readCopy reads one copy of the default as GRUB does: only when its
// checksum file matches, and it must name a group's partition.
func (r *rugixGrubFlow) readCopy(name string) (string, error) {
	p := r.file(name)
	b, err := r.fsys.ReadFile(p)
	if err != nil {
		return "", stateErr(r.fsys.Path(p), err)
	}
	sum, err := r.fsys.ReadFile(p + ".sha1")
	if err != nil {
		return "", stateErr(r.fsys.Path(p+".sha1"), err)
	}
	if !bytes.Equal(sum, RugixSum(name, b)) {
		return "", stateErr(r.fsys.Path(p), fmt.Errorf("its checksum in %s.sha1 does not match", name))
	}
	env, err := grubenv.Parse(b)
	if err != nil {
		return "", stateErr(r.fsys.Path(p), err)
	}
	v, _ := env.Get(RugixVarBootpart)
	n, err := strconv.Atoi(v)
	if err != nil {
		return "", stateErr(r.fsys.Path(p), fmt.Errorf("%s=%q is no partition number", RugixVarBootpart, v))
	}
	g, ok := groupWith(r.partitions, n)
	if !ok {
		return "", stateErr(r.fsys.Path(p), fmt.Errorf("%s=%d is no configured group's boot partition", RugixVarBootpart, n))
	}
	return g, nil
}

// Default follows the script: the primary copy if it checks, else the
// secondary.
func (r *rugixGrubFlow) Default() (string, error) {
	def, perr := r.readCopy(RugixPrimary)
	if perr == nil {
		return def, nil
	}
	def, serr := r.readCopy(RugixSecondary)
	if serr == nil {
		return def, nil
	}
	return "", fmt.Errorf("no usable copy of the default: %w (and %w)", perr, serr)
}

func (r *rugixGrubFlow) other(g string) string {
	for _, o := range r.groups {
		if o != g {
			return o
		}
	}
	return g
}

func (r *rugixGrubFlow) spare() bool {
	b, err := r.fsys.ReadFile(r.file(RugixSpare))
	if err != nil {
		return false
	}
	env, err := grubenv.Parse(b)
	if err != nil {
		return false
	}
	v, _ := env.Get(RugixVarBootSpare)
	return v == "true"
}

func (r *rugixGrubFlow) writeSpare(v string) error {
	b, err := grubenv.Block(RugixVarBootSpare, v)
	if err != nil {
		return err
	}
	return rootfs.WriteAtomic(r.fsys, r.file(RugixSpare), b, 0o644)
}

// Trial reports the other group while rugpi_boot_spare=true.
func (r *rugixGrubFlow) Trial() (string, int, error) {
	if !r.spare() {
		return "", 0, nil
	}
	def, err := r.Default()
	if err != nil {
		return "", 0, err
	}
	return r.other(def), 1, nil
}

// TryNext sets rugpi_boot_spare=true; the script boots the group that is
// not the default, so group must be that one.
func (r *rugixGrubFlow) TryNext(group string) error {
	if err := checkGroup(r.groups, group); err != nil {
		return err
	}
	def, err := r.Default()
	if err != nil {
		return err
	}
	if group == def {
		return fmt.Errorf("group %s is the default; the rugix-grub script can only try the other group", group)
	}
	return r.writeSpare("true")
}

func (r *rugixGrubFlow) CancelTry() error {
	if !r.spare() {
		if _, err := r.fsys.Stat(r.file(RugixSpare)); err == nil {
			return nil
		}
	}
	return r.writeSpare("false")
}

func (r *rugixGrubFlow) writeCopy(name, group string) error {
	b, err := grubenv.Block(RugixVarBootpart, strconv.Itoa(r.partitions[group]))
	if err != nil {
		return err
	}
	if err := rootfs.WriteAtomic(r.fsys, r.file(name), b, 0o644); err != nil {
		return err
	}
	return rootfs.WriteAtomic(r.fsys, r.file(name+".sha1"), RugixSum(name, b), 0o644)
}

// Commit writes the secondary copy, then the primary, as Rugix Ctrl does.
func (r *rugixGrubFlow) Commit(group string) error {
	if err := checkGroup(r.groups, group); err != nil {
		return err
	}
	for _, name := range []string{RugixSecondary, RugixPrimary} {
		if err := r.writeCopy(name, group); err != nil {
			return err
		}
	}
	return r.CancelTry()
}

// Repair rewrites a copy that does not name group or fails its checksum,
// in the order of Commit.
func (r *rugixGrubFlow) Repair(group string) (bool, error) {
	if err := checkGroup(r.groups, group); err != nil {
		return false, err
	}
	wrote := false
	for _, name := range []string{RugixSecondary, RugixPrimary} {
		if def, err := r.readCopy(name); err == nil && def == group {
			continue
		}
		if err := r.writeCopy(name, group); err != nil {
			return wrote, err
		}
		wrote = true
	}
	return wrote, nil
}
