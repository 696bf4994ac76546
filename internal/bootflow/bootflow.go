// Package bootflow adapts tandem to boot loaders. A boot flow reads and
// writes the state a boot loader decides with: which group is the default,
// and which group to boot once on trial. One file per flow implements Flow;
// every flow passes the same conformance test (conformance_test.go), and
// docs/boot-flows.md gives each flow's rule table and crash-safety argument.
//
// Every write a flow makes keeps safety invariant 4 of docs/design.md: a power cut
// at any instant leaves a boot configuration that starts the group that was
// bootable before the operation or the newly tried one.
package bootflow

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Flow is the contract every boot flow fulfils. Groups are boot group names
// from the configuration. Implementations are not safe for concurrent use;
// tandem holds its lock while it calls them.
type Flow interface {
	// Name is the flow type as configured ("grub", "uboot", ...).
	Name() string
	// Default returns the group the boot loader starts when nothing else is
	// asked. A boot state that cannot be read is an error naming the file.
	Default() (string, error)
	// TryNext asks the boot loader to start group on trial at the next boot,
	// for the configured number of attempts; once they are used up without
	// Commit, the boot loader starts the default again.
	TryNext(group string) error
	// CancelTry withdraws a pending TryNext. It is not an error if none is pending.
	CancelTry() error
	// Commit makes group the default and ends its trial.
	Commit(group string) error
}

// TrialReader is implemented by flows that can tell whether a trial is
// waiting for the next boot.
type TrialReader interface {
	// Trial returns the group waiting to be tried and the boot attempts it
	// has left; group is "" when no trial is pending.
	Trial() (group string, left int, err error)
}

// Counter is implemented by flows whose boot loader counts trial attempts.
// Marking a group good is Commit.
type Counter interface {
	TrialReader
	// MarkBad ends group's trial: the boot loader does not start it again.
	MarkBad(group string) error
}

// Repairer is implemented by flows that keep redundant copies of the
// default. Repair rewrites every copy that does not name group (as an
// interrupted Commit can leave them) and reports whether it wrote anything.
type Repairer interface {
	Repair(group string) (bool, error)
}

// Retirer is implemented by flows that keep a boot entry per group (systemd-boot
// with boot counting). Retire removes group's entry before its slots are
// written, so that nothing offers a group that is being written; it refuses
// the default group.
type Retirer interface {
	Retire(group string) error
}

// RebootArger is implemented by flows whose try-next must be passed to the
// reboot itself (the Raspberry Pi firmware's one-shot tryboot flag).
type RebootArger interface {
	// RebootArgs returns the arguments to append to the reboot command.
	RebootArgs() ([]string, error)
}

// ErrBootState marks boot state that cannot be read or trusted (a corrupt or
// missing env file, an unknown group in it).
var ErrBootState = errors.New("unusable boot state")

// New returns the flow the configuration selects, operating on fsys.
func New(cfg *config.Config, fsys rootfs.FS) (Flow, error) {
	bf := cfg.BootFlow
	groups := cfg.GroupNames()
	switch bf.Type {
	case config.FlowGrub:
		return newGrub(bf, groups, fsys), nil
	case config.FlowUBoot:
		return newUBoot(bf, groups, fsys), nil
	case config.FlowRPiTryboot:
		return newRPi(bf, groups, fsys), nil
	case config.FlowSystemdBoot:
		if bf.BootCounting {
			return newSDCount(cfg, fsys), nil
		}
		return newSystemdBoot(bf, groups, fsys), nil
	case config.FlowCustom:
		return newCustom(bf, groups, fsys), nil
	case config.FlowMenderGrub, config.FlowMenderUBoot:
		return newMender(bf, groups, fsys), nil
	case config.FlowRAUCGrub, config.FlowRAUCUBoot:
		return newRAUC(bf, groups, fsys), nil
	case config.FlowRugixGrub:
		return newRugixGrub(bf, groups, fsys), nil
	}
	return nil, fmt.Errorf("unknown boot flow %q", bf.Type)
}

// checkGroup rejects a group that is not configured.
func checkGroup(groups []string, g string) error {
	if !slices.Contains(groups, g) {
		return fmt.Errorf("unknown boot group %q", g)
	}
	return nil
}

// groupWith returns the group whose value in m is v (the first in name
// order), e.g. the group of a partition number or of a loader entry.
func groupWith[V comparable](m map[string]V, v V) (string, bool) {
	for _, g := range slices.Sorted(maps.Keys(m)) {
		if m[g] == v {
			return g, true
		}
	}
	return "", false
}

func stateErr(file string, err error) error {
	return fmt.Errorf("%s: %w: %w", file, ErrBootState, err)
}
