// Package state is tandem's state management: the read-only system's
// writable overlay, the persistent paths declared in /etc/tandem/state.d,
// the data partition that holds them, factory reset, and the trial
// snapshots that make state follow the system through an update and back on
// rollback.
//
// It has three parts. Config is the strict configuration (Load, Parse).
// Plan is a pure function from the configuration and what a boot found (the
// data partition, its journal, the booting and default groups) to an
// ordered list of actions; the plan is data, printed by `tandem state info`,
// run by init with real mounts and by the simulator with folder operations
// (Apply and a Mounter). Store performs the state transitions — format,
// reset, snapshot, commit, rollback, adopt — on the mounted data partition
// through the rootfs file layer, each made durable and then committed by one
// atomic rename of the journal, so a power cut at any point leaves the old
// state or the new one. The on-disk layout is described in docs/state.md.
package state
