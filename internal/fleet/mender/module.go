package mender

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/health"
)

// PayloadType is the Mender payload type this module installs: the module
// is installed as /usr/share/mender/modules/v3/tandem.
const PayloadType = "tandem"

// Adapter names the module's job file: <data-dir>/fleet/mender.json.
const Adapter = "mender"

// Module is one invocation of the update module (protocol v3): the Mender
// client runs `tandem mender-module STATE TREE` once per state, and the
// module is a fleet.Adapter whose one Step runs State with the module tree
// Tree (the command line runs it under fleet.Loop with Once). A Step
// answers the query states on Stdout, writes its progress on Log and
// returns the state's error (the module's exit status). Unknown states do
// nothing (the protocol asks modules to ignore states they do not know).
type Module struct {
	// Agent carries the update; its Options are the base install options
	// (trust, HTTP, downgrade policy) and Adapter should be Adapter.
	Agent *fleet.Agent
	// Health is the health check ArtifactCommit runs (Open is set from the
	// agent when nil).
	Health health.Options
	// State is the state this invocation runs; Tree the module tree
	// (needed by Download).
	State, Tree string
	// Stdout receives the answers of the query states; Log one line per
	// step (Mender logs the module's stderr).
	Stdout, Log io.Writer
}

// Name is Adapter.
func (m *Module) Name() string { return Adapter }

// Step runs m.State (see Module).
func (m *Module) Step(ctx context.Context) (fleet.Step, error) {
	act, err := m.run(ctx)
	return fleet.Step{Activity: act, Message: m.State}, err
}

func (m *Module) run(ctx context.Context) (fleet.Activity, error) {
	t := Tree{Dir: m.Tree}
	switch m.State {
	case "NeedsArtifactReboot":
		// Yes: the client calls ArtifactReboot, which reboots with the
		// boot flow's arguments (tryboot needs them), not plain `reboot`.
		_, err := fmt.Fprintln(m.Stdout, "Yes")
		return fleet.ActIdle, err
	case "SupportsRollback":
		_, err := fmt.Fprintln(m.Stdout, "Yes")
		return fleet.ActIdle, err
	case "Download":
		return fleet.ActWorking, m.download(ctx, t)
	case "ArtifactInstall":
		return fleet.ActWorking, m.artifactInstall()
	case "ArtifactReboot":
		return fleet.ActRebooting, m.artifactReboot()
	case "ArtifactVerifyReboot":
		return fleet.ActWorking, m.verifyReboot()
	case "ArtifactCommit":
		return fleet.ActReported, m.commit(ctx)
	case "ArtifactRollback":
		return fleet.ActWorking, m.rollback()
	case "ArtifactRollbackReboot":
		return m.rollbackReboot()
	case "ArtifactVerifyRollbackReboot":
		return fleet.ActWorking, m.verifyRollbackReboot()
	case "ArtifactFailure":
		return fleet.ActReported, m.failure()
	case "Cleanup":
		return fleet.ActWorking, m.Agent.Done()
	}
	return fleet.ActIdle, nil
}

func (m *Module) logf(format string, args ...any) {
	if m.Log != nil {
		fmt.Fprintf(m.Log, "tandem: "+format+"\n", args...)
	}
}

// clearStale forgets a job an earlier deployment left behind: Mender
// starts a Download only when it has given up on any earlier one. A group
// still running on trial is refused by Begin.
func (m *Module) clearStale() error {
	o, err := m.Agent.Outcome()
	if errors.Is(err, fleet.ErrBadJob) {
		m.logf("dropping a job file that cannot be used: %v", err)
		return m.Agent.Done()
	}
	if err != nil || o.State == fleet.Idle || o.State == fleet.Verifying {
		return err
	}
	m.logf("forgetting the earlier update %s (%s)", o.Job.ID, o.State)
	if o.State == fleet.Rebooting {
		if err := m.Agent.Fail("replaced by a new deployment"); err != nil {
			return err
		}
	}
	return m.Agent.Done()
}

// fail records err as the job's failure and returns it (with cause, if any).
func (m *Module) fail(err, cause error) error {
	if cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	if ferr := m.Agent.Fail(err.Error()); ferr != nil {
		return fmt.Errorf("%w (and the job was not updated: %v)", err, ferr)
	}
	return err
}

// outcome returns the job's outcome, refusing when there is no job.
func (m *Module) outcome() (fleet.Outcome, error) {
	o, err := m.Agent.Outcome()
	if err == nil && o.State == fleet.Idle {
		err = fmt.Errorf("%w: no tandem update is under way (no %s job)", device.ErrRefused, Adapter)
	}
	return o, err
}

// artifactInstall requests the trial boot of the group Download wrote.
func (m *Module) artifactInstall() error {
	if err := m.Agent.Try(); err != nil {
		return err
	}
	o, err := m.outcome()
	if err != nil {
		return err
	}
	m.logf("group %s boots on trial at the next reboot", o.Job.Group)
	return nil
}

func (m *Module) artifactReboot() error {
	o, err := m.outcome()
	if err != nil {
		return err
	}
	if o.State != fleet.Rebooting {
		return fmt.Errorf("%w: update %s is %s, not waiting for its reboot", device.ErrRefused, o.Job.ID, o.State)
	}
	m.logf("rebooting into group %s on trial", o.Job.Group)
	return m.Agent.Reboot()
}

// verifyReboot checks that the new group runs (on trial, or already
// committed by the tandem-health service).
func (m *Module) verifyReboot() error {
	o, err := m.outcome()
	if err != nil {
		return err
	}
	switch o.State {
	case fleet.Verifying, fleet.Success:
		if o.Reason != "" {
			m.logf("update %s: %s", o.Job.ID, o.Reason)
		} else {
			m.logf("running group %s (%s)", o.Job.Group, o.State)
		}
		return nil
	case fleet.Failure:
		return errors.New(o.Reason)
	}
	return fmt.Errorf("update %s is %s: the device does not run group %s", o.Job.ID, o.State, o.Job.Group)
}

// commit commits the new group through the health check: it runs the
// health hooks until they pass (then commits) or the deadline passes
// (then rolls back and reboots into the committed group).
func (m *Module) commit(ctx context.Context) error {
	o, err := m.outcome()
	if err != nil {
		return err
	}
	switch o.State {
	case fleet.Success:
		if o.Reason != "" {
			m.logf("update %s: %s", o.Job.ID, o.Reason)
		} else {
			m.logf("group %s is committed", o.Job.Group)
		}
		return nil
	case fleet.Verifying:
	case fleet.Failure:
		return errors.New(o.Reason)
	case fleet.Rebooting:
		return fmt.Errorf("%w: the device has not rebooted into group %s yet; reboot first", device.ErrRefused, o.Job.Group)
	default:
		return fmt.Errorf("%w: update %s is %s; nothing to commit", device.ErrRefused, o.Job.ID, o.State)
	}
	h := m.Health
	if h.Open == nil {
		h.Open = m.Agent.Open
	}
	res, err := health.Run(ctx, h)
	if err != nil {
		return err
	}
	switch res.Verdict {
	case health.RolledBack:
		return fmt.Errorf("%w: %s", health.ErrUnhealthy, res.Message)
	case health.Committed:
		m.logf("the health checks passed; group %s is committed", o.Job.Group)
	}
	if o, err = m.outcome(); err != nil {
		return err
	}
	if o.State != fleet.Success {
		return fmt.Errorf("update %s is %s after the health check: %s", o.Job.ID, o.State, o.Reason)
	}
	return nil
}

// rollback gives the old group back: a trial not booted yet is withdrawn;
// a trial that runs is given up, so that the next boot (ArtifactRollbackReboot)
// starts the committed group.
func (m *Module) rollback() error {
	o, err := m.Agent.Outcome()
	if err != nil {
		return err
	}
	switch o.State {
	case fleet.Idle, fleet.Failure:
		return nil
	case fleet.Success:
		return fmt.Errorf("%w: group %s is committed; it cannot be rolled back", device.ErrRefused, o.Job.Group)
	case fleet.Verifying:
		if given, err := m.givenUp(o.Job.Group); err != nil || given {
			return err // the health check rolled back already: keep its reason
		}
		m.logf("giving up the trial of group %s; the next boot starts group %s", o.Job.Group, o.Job.From)
		return m.Agent.RollBack("rolled back by mender")
	}
	return m.Agent.Fail("rolled back by mender")
}

// givenUp reports whether the trial of the running group was given up
// already (by the health check): no trial recorded, the last update of the
// group rolled back.
func (m *Module) givenUp(group string) (bool, error) {
	d, err := m.Agent.Open()
	if err != nil {
		return false, err
	}
	db, err := d.LoadState()
	if err != nil {
		return false, err
	}
	u := db.LastUpdate
	return db.Trial == nil && u != nil && u.Group == group && u.Status == "rolled-back", nil
}

// rollbackReboot reboots into the committed group when the device still
// runs the rolled-back one.
func (m *Module) rollbackReboot() (fleet.Activity, error) {
	d, err := m.Agent.Open()
	if err != nil {
		return fleet.ActWorking, err
	}
	st, err := d.Status()
	if err != nil || !st.CommitPending() {
		return fleet.ActWorking, err
	}
	m.logf("rebooting from group %s into group %s", st.Active, st.Default)
	return fleet.ActRebooting, d.Reboot()
}

// verifyRollbackReboot checks that the device runs its committed group.
func (m *Module) verifyRollbackReboot() error {
	d, err := m.Agent.Open()
	if err != nil {
		return err
	}
	st, err := d.Status()
	if err != nil {
		return err
	}
	if st.CommitPending() {
		return fmt.Errorf("the device still runs group %s on trial, not its default %s", st.Active, st.Default)
	}
	return nil
}

// failure makes sure a failed update leaves nothing that boots
// differently: a pending trial is withdrawn, a running one given up.
func (m *Module) failure() error {
	o, err := m.Agent.Outcome()
	if err != nil {
		return err
	}
	switch o.State {
	case fleet.Verifying:
		if given, err := m.givenUp(o.Job.Group); err != nil || given {
			return err
		}
		return m.Agent.RollBack("the mender deployment failed")
	case fleet.Installing, fleet.Installed, fleet.Rebooting:
		return m.Agent.Fail("the mender deployment failed")
	}
	return nil
}
