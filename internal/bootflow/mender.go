package bootflow

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strconv"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Mender flows (mender-grub, mender-uboot): the variables Mender's boot
// integrations read, written where Mender keeps them, so that a device that
// ran the Mender client keeps its boot loader (rule table in
// docs/boot-flows.md, facts in docs/migrating.md):
//
//	mender_boot_part       the partition number of the group to boot (Mender's numbering: A = 2, B = 3 by default)
//	mender_boot_part_hex   the same number in hexadecimal (U-Boot's load commands take it)
//	upgrade_available      1 while a trial is pending or running, else 0
//	bootcount              0 before the trial's boot; the boot loader sets it (GRUB 1, U-Boot counts up)
//
// The boot loader starts mender_boot_part; with upgrade_available=1 it
// counts the boot and, on the next boot without a commit, swaps to the other
// partition and clears upgrade_available (the rollback). So the default is
// mender_boot_part when upgrade_available=0 and the other group when it is
// 1. Mender's integrations allow one attempt and exactly two groups.
//
// mender-uboot keeps the variables in U-Boot's redundant environment (the
// file or fw-setenv back end, one atomic update each). mender-grub keeps
// them in Mender's grubenv pair, <env-dir>/mender_grubenv{1,2}/env, each
// guarded by a lock file (a grubenv block with editing=0|1) that GRUB checks
// before it trusts the copy; see menderGrubStore.
const (
	MenderVarPart      = "mender_boot_part"
	MenderVarPartHex   = "mender_boot_part_hex"
	MenderVarUpgrade   = "upgrade_available"
	MenderVarBootcount = "bootcount"
	MenderVarEditing   = "editing"
)

type menderFlow struct {
	name       string
	store      ubootStore
	groups     []string
	partitions map[string]int
}

func newMender(bf config.BootFlow, groups []string, fsys rootfs.FS) *menderFlow {
	f := &menderFlow{name: bf.Type, groups: groups, partitions: bf.Partitions}
	if bf.Type == config.FlowMenderGrub {
		f.store = &menderGrubStore{fsys: fsys, dir: bf.EnvDir}
	} else {
		f.store = envStore(bf, fsys)
	}
	return f
}

func (m *menderFlow) Name() string { return m.name }

// menderState is the environment as the boot loader reads it.
type menderState struct {
	part      string // group named by mender_boot_part
	upgrade   bool
	bootcount string
}

func (m *menderFlow) state() (menderState, error) {
	env, err := m.store.load()
	if err != nil {
		return menderState{}, err
	}
	bad := func(format string, args ...any) (menderState, error) {
		return menderState{}, fmt.Errorf("%s environment: %w: %s", m.name, ErrBootState, fmt.Sprintf(format, args...))
	}
	n, err := strconv.Atoi(env[MenderVarPart])
	if err != nil {
		return bad("%s=%q is no partition number", MenderVarPart, env[MenderVarPart])
	}
	g, ok := groupWith(m.partitions, n)
	if !ok {
		return bad("%s=%d is no configured group's partition", MenderVarPart, n)
	}
	st := menderState{part: g, bootcount: env[MenderVarBootcount]}
	switch env[MenderVarUpgrade] {
	case "0", "":
	case "1":
		st.upgrade = true
	default:
		return bad("%s=%q (want 0 or 1)", MenderVarUpgrade, env[MenderVarUpgrade])
	}
	return st, nil
}

func (m *menderFlow) other(g string) string {
	for _, o := range m.groups {
		if o != g {
			return o
		}
	}
	return g
}

// Default is mender_boot_part, or the other group while upgrade_available=1
// (where the boot loader rolls back to).
func (m *menderFlow) Default() (string, error) {
	st, err := m.state()
	if err != nil {
		return "", err
	}
	if st.upgrade {
		return m.other(st.part), nil
	}
	return st.part, nil
}

// Trial reports the group waiting for its one boot: upgrade_available=1 and
// the boot loader has not counted a boot yet.
func (m *menderFlow) Trial() (string, int, error) {
	st, err := m.state()
	if err != nil {
		return "", 0, err
	}
	if st.upgrade && (st.bootcount == "0" || st.bootcount == "") {
		return st.part, 1, nil
	}
	return "", 0, nil
}

func (m *menderFlow) bootPart(group string, upgrade string) [][2]string {
	n := m.partitions[group]
	return [][2]string{
		{MenderVarPart, strconv.Itoa(n)},
		{MenderVarPartHex, strconv.FormatInt(int64(n), 16)},
		{MenderVarUpgrade, upgrade},
		{MenderVarBootcount, "0"},
	}
}

// TryNext does what the Mender client does after writing the inactive
// partition: point mender_boot_part at it and set upgrade_available=1,
// bootcount=0, in one environment update.
func (m *menderFlow) TryNext(group string) error {
	if err := checkGroup(m.groups, group); err != nil {
		return err
	}
	return m.store.save(m.bootPart(group, "1"))
}

// CancelTry is the Mender client's rollback: mender_boot_part back to the
// default, upgrade_available=0. It also ends a trial that already booted.
func (m *menderFlow) CancelTry() error {
	st, err := m.state()
	if err == nil && !st.upgrade {
		return nil
	}
	def := m.groups[0]
	if err == nil {
		def = m.other(st.part)
	} else if d, derr := m.Default(); derr == nil {
		def = d
	}
	return m.store.save(m.bootPart(def, "0"))
}

// Commit is the Mender client's commit: upgrade_available=0 with
// mender_boot_part naming group.
func (m *menderFlow) Commit(group string) error {
	if err := checkGroup(m.groups, group); err != nil {
		return err
	}
	return m.store.save(m.bootPart(group, "0"))
}

// MarkBad ends group's trial (pending or running) as the rollback would.
func (m *menderFlow) MarkBad(group string) error {
	st, err := m.state()
	if err != nil || !st.upgrade || st.part != group {
		return err
	}
	return m.CancelTry()
}

// menderGrubStore is Mender's grubenv pair. GRUB trusts a copy whose lock
// says editing=0; before it reads, it restores a copy whose lock is not 0
// from the other one (copy 2 first), then reads copy 1. A write follows
// Mender's own order: lock 2 to editing=1, env 2, lock 2 to 0, then the
// same for copy 1; each file is replaced atomically (new, fsync, rename).
// Whatever a power cut interrupts, one copy is whole and trusted, and GRUB
// reads the old or the new variables.
type menderGrubStore struct {
	fsys rootfs.FS
	dir  string
}

func (s *menderGrubStore) file(copy int, name string) string {
	return path.Join(s.dir, fmt.Sprintf("mender_grubenv%d", copy), name)
}

// locked reports whether copy's lock file is anything but editing=0 (as
// GRUB's check reads it: a missing or unreadable lock is not 0).
func (s *menderGrubStore) locked(copy int) bool {
	b, err := s.fsys.ReadFile(s.file(copy, "lock"))
	if err != nil {
		return true
	}
	env, err := grubenv.Parse(b)
	if err != nil {
		return true
	}
	v, _ := env.Get(MenderVarEditing)
	return v != "0"
}

// current returns the copy GRUB reads once it has restored the other.
func (s *menderGrubStore) current() (*grubenv.Env, error) {
	c := 1
	if !s.locked(2) && s.locked(1) {
		c = 2
	}
	p := s.file(c, "env")
	b, err := s.fsys.ReadFile(p)
	if err != nil {
		return nil, stateErr(s.fsys.Path(p), err)
	}
	env, err := grubenv.Parse(b)
	if err != nil {
		return nil, stateErr(s.fsys.Path(p), err)
	}
	return env, nil
}

func (s *menderGrubStore) load() (map[string]string, error) {
	env, err := s.current()
	if err != nil {
		return nil, err
	}
	return env.Map(), nil
}

// MenderLock returns the lock block with editing set to v.
func MenderLock(v string) []byte {
	b, err := grubenv.Block(MenderVarEditing, v)
	if err != nil {
		panic(err) // a fixed, small block
	}
	return b
}

// MenderLockSum is the line of lock.sha256sum for the lock block with
// editing=0 (Mender's tools check it with sha256sum -c).
func MenderLockSum() []byte {
	sum := sha256.Sum256(MenderLock("0"))
	return []byte(hex.EncodeToString(sum[:]) + "  lock\n")
}

// lockBlocks returns the lock block with editing=0 and with editing=1. They
// are made from a lock file on the device, the one value swapped in place,
// so that lock.sha256sum (made at the image's build by its grub-editenv,
// whose block layout differs between GRUB versions) keeps matching.
func (s *menderGrubStore) lockBlocks() (unlocked, locked []byte) {
	zero, one := []byte("\n"+MenderVarEditing+"=0\n"), []byte("\n"+MenderVarEditing+"=1\n")
	for _, c := range []int{1, 2} {
		b, err := s.fsys.ReadFile(s.file(c, "lock"))
		if err != nil || len(b) != grubenv.BlockSize {
			continue
		}
		if _, err := grubenv.Parse(b); err != nil {
			continue
		}
		switch {
		case bytes.Count(b, zero) == 1 && !bytes.Contains(b, one):
			return b, bytes.Replace(b, zero, one, 1)
		case bytes.Count(b, one) == 1 && !bytes.Contains(b, zero):
			return bytes.Replace(b, one, zero, 1), b
		}
	}
	return MenderLock("0"), MenderLock("1")
}

func (s *menderGrubStore) save(vars [][2]string) error {
	env, err := s.current()
	if err != nil {
		return err
	}
	for _, kv := range vars {
		if kv[1] == "" {
			env.Delete(kv[0])
		} else if err := env.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	b, err := env.Encode(grubenv.BlockSize)
	if err != nil {
		return err
	}
	unlocked, locked := s.lockBlocks()
	for _, c := range []int{2, 1} {
		for _, w := range []struct {
			name string
			data []byte
		}{{"lock", locked}, {"env", b}, {"lock", unlocked}} {
			if err := rootfs.WriteAtomic(s.fsys, s.file(c, w.name), w.data, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// envStore is the U-Boot environment store the configuration selects.
func envStore(bf config.BootFlow, fsys rootfs.FS) ubootStore {
	if bf.Backend == config.UBootBackendFwSetenv {
		return &fwSetenvStore{fsys: fsys, config: fsys.Path(bf.FwEnvConfig)}
	}
	return &ubootFileStore{fsys: fsys, files: [2]string{bf.EnvFile, bf.EnvFileRedund}, size: bf.EnvSize}
}
