package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/tedge"
	"github.com/tandem-ota/tandem/internal/install"
)

// tedgeFlags are the MQTT settings shared by tandem tedge and its workflow steps.
type tedgeFlags struct {
	broker, root, device, clientID string
}

func (a *app) addTedgeFlags(f *tedgeFlags, cmd *cobra.Command, clientID string) {
	broker := a.env.Getenv("TANDEM_TEDGE_BROKER")
	if broker == "" {
		broker = "127.0.0.1:1883"
	}
	cmd.Flags().StringVar(&f.broker, "broker", broker, "MQTT broker: host:port or URL (tcp://, ssl://, ws://) (env TANDEM_TEDGE_BROKER)")
	cmd.Flags().StringVar(&f.root, "topic-root", "te", "thin-edge.io MQTT topic root (mqtt.topic_root)")
	cmd.Flags().StringVar(&f.device, "device-topic-id", "device/main//", "thin-edge.io device topic id (mqtt.device_topic_id)")
	cmd.Flags().StringVar(&f.clientID, "client-id", clientID, "MQTT client id")
}

func (f *tedgeFlags) topics() (tedge.Topics, error) {
	t, err := tedge.ParseTopics(f.root, f.device)
	if err != nil {
		return t, usageError{err}
	}
	return t, nil
}

func (a *app) tedgeCommand() *cobra.Command {
	var f tedgeFlags
	var o install.Options
	var preferRemote bool
	var poll time.Duration
	cmd := &cobra.Command{
		Use:   "tedge [--broker HOST:PORT] [--device-topic-id device/main//]",
		Short: "Run the thin-edge.io firmware_update operation handler (MQTT)",
		Long: `Handle thin-edge.io firmware_update commands over MQTT, as a service (systemd/tandem-tedge.service).

tandem announces the capability (retained {} on te/device/main///cmd/firmware_update) and takes each
command te/device/main///cmd/firmware_update/<id> in status init from the cloud mapper:

  executing    the bundle is installed from tedgeUrl (else remoteUrl) into the spare group, by delta
               when the server answers range requests; a bad bundle ends in failed
  restarting   published before the reboot into the new group on trial
  verifying    the new group runs; tandem health (tandem-health.service) decides
  successful   the new group committed itself; the firmware twin te/device/main///twin/firmware
               {"name","version","url"} is published first
  failed       with a reason: the install failed, or the trial was rolled back

Every status message keeps the command's own fields. The update is a job in
<data-dir>/fleet/tedge.json, so the handler resumes after the reboot, a crash or a power cut; it
reconnects to the broker for ever and publishes its state again after a broker restart.

For devices whose tedge-agent runs user-defined workflows instead, see "tandem tedge workflow"
and docs/integrations/thin-edge.md.`,
		Example: `  tandem tedge
  tandem tedge --broker 192.168.1.10:1883 --prefer-remote-url`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			topics, err := f.topics()
			if err != nil {
				return err
			}
			if poll <= 0 {
				return usageError{errors.New("--poll must be > 0")}
			}
			if _, err := a.open(); err != nil {
				return err // fail early on a configuration error
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Progress.Warn = func(s string) { fmt.Fprintf(a.env.Stderr, "tandem: warning: %s\n", s) }
			err = tedge.Run(ctx, tedge.Config{
				Agent:  &fleet.Agent{Open: a.open, Adapter: tedge.Adapter, Options: o},
				Broker: f.broker, ClientID: f.clientID, Topics: topics, PreferRemoteURL: preferRemote, Poll: poll,
				Log: slog.New(slog.NewTextHandler(a.env.Stderr, nil)),
			})
			if errors.Is(err, context.Canceled) {
				return nil // stopped by a signal
			}
			return err
		},
	}
	a.addTedgeFlags(&f, cmd, "tandem-tedge")
	fl := cmd.Flags()
	fl.BoolVar(&preferRemote, "prefer-remote-url", false, "install from remoteUrl even when the command has a tedgeUrl (for a CDN that serves ranges)")
	fl.DurationVar(&poll, "poll", 5*time.Second, "how often to look whether the health check has decided")
	fl.StringArrayVar(&o.Trust.Files, "trust", nil, "extra trusted public key or root certificate (PEM, repeatable)")
	fl.StringVar(&o.HTTP.CAFile, "ca-file", "", "PEM roots for https")
	fl.BoolVar(&o.HTTP.NoDelta, "no-delta", false, "download whole bundles even when the server supports ranges")
	cmd.AddCommand(a.tedgeWorkflowCommand())
	return cmd
}

// WorkflowAdapter names the job of the workflow steps (<data-dir>/fleet/tedge-workflow.json).
const WorkflowAdapter = "tedge-workflow"

// workflowStatus is what a workflow step prints for tedge-agent: the next
// state of the workflow (on_stdout) and, for failed, the reason.
type workflowStatus struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

func (a *app) workflowPrint(next, reason string) {
	b, _ := json.Marshal(workflowStatus{Status: next, Reason: reason})
	a.printf(":::begin-tedge:::\n%s\n:::end-tedge:::\n", b)
}

func (a *app) tedgeWorkflowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "workflow",
		Short: "Steps for a tedge-agent firmware_update workflow (integrations/thin-edge/firmware_update.toml)",
		Long: `The steps the firmware_update workflow in integrations/thin-edge/firmware_update.toml runs, for
devices whose tedge-agent runs user-defined workflows (install it as /etc/tedge/operations/
firmware_update.toml). Each step prints the workflow's next state for tedge-agent between
:::begin-tedge::: and :::end-tedge::: ({"status":...,"reason":...}) and exits 0; a non-zero
exit is a step that could not run at all. The update is a job in <data-dir>/fleet/tedge-workflow.json.

  begin     record the command (fails while a group runs on trial)   → install | failed
  install   download and install into the spare group, arrange the trial boot → restart | failed
  verify    after the reboot: wait until tandem health has decided; on success publish the
            firmware twin                                             → successful | failed
  abort     give the job up (the restart did not happen)              → failed`,
	}
	begin := &cobra.Command{
		Use:   "begin ID [--tedge-url URL] [--remote-url URL] [--version V]",
		Short: "Record a firmware_update command as tandem's job",
		Args:  exactArgs(1),
	}
	var tedgeURL, remoteURL, version string
	var preferRemote bool
	begin.Flags().StringVar(&tedgeURL, "tedge-url", "", "the command's tedgeUrl")
	begin.Flags().StringVar(&remoteURL, "remote-url", "", "the command's remoteUrl")
	begin.Flags().StringVar(&version, "version", "", "the command's version")
	begin.Flags().BoolVar(&preferRemote, "prefer-remote-url", false, "install from remoteUrl even when there is a tedgeUrl")
	begin.RunE = func(cmd *cobra.Command, args []string) error {
		c := (&tedge.Command{}).With("status", tedge.StatusExecuting, "tedgeUrl", tedgeURL, "remoteUrl", remoteURL, "version", version)
		src, err := c.Source(preferRemote)
		if err != nil {
			a.workflowPrint(tedge.StatusFailed, err.Error())
			return nil
		}
		ag := a.workflowAgent(install.Options{})
		if j, err := ag.Job(); err == nil && j != nil && j.ID == args[0] {
			if o, err := ag.Outcome(); err == nil && !o.Final() {
				a.workflowPrint("install", "") // the agent restarted during this step: go on
				return nil
			}
		}
		if _, err := ag.Begin(fleet.Job{ID: args[0], Source: src, Version: version}); err != nil {
			a.workflowPrint(tedge.StatusFailed, oneLine(err.Error()))
			return nil
		}
		a.workflowPrint("install", "")
		return nil
	}

	var o install.Options
	installCmd := &cobra.Command{
		Use:   "install",
		Short: "Install the job's bundle into the spare group and arrange the trial boot",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Progress.Warn = func(s string) { fmt.Fprintf(a.env.Stderr, "tandem: warning: %s\n", s) }
			ag := a.workflowAgent(o)
			if _, err := ag.Install(context.Background(), o, install.RebootSet); err != nil {
				_ = ag.Done() // the failure is reported now; nothing was tried
				a.workflowPrint(tedge.StatusFailed, oneLine(err.Error()))
				return nil
			}
			a.workflowPrint("restart", "")
			return nil
		},
	}
	installCmd.Flags().StringArrayVar(&o.Trust.Files, "trust", nil, "extra trusted public key or root certificate (PEM, repeatable)")
	installCmd.Flags().StringVar(&o.HTTP.CAFile, "ca-file", "", "PEM roots for https")
	installCmd.Flags().BoolVar(&o.HTTP.NoDelta, "no-delta", false, "download the whole bundle even when the server supports ranges")

	var f tedgeFlags
	var name, remote string
	var poll time.Duration
	verify := &cobra.Command{
		Use:   "verify [--name N] [--remote-url URL]",
		Short: "Wait for the health check's decision; publish the firmware twin on success",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			topics, err := f.topics()
			if err != nil {
				return err
			}
			ag := a.workflowAgent(install.Options{})
			out, err := ag.Wait(context.Background(), poll)
			if err != nil {
				return err
			}
			switch out.State {
			case fleet.Success:
				version := out.Job.Installed
				if version == "" {
					version = out.Job.Version
				}
				twin, _ := json.Marshal(tedge.Twin{Name: name, Version: version, URL: remote})
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := tedge.PublishRetained(ctx, f.broker, f.clientID, topics.Twin(), twin); err != nil {
					return fmt.Errorf("publish the firmware twin: %w", err)
				}
				a.workflowPrint(tedge.StatusSuccessful, "")
			case fleet.Failure:
				a.workflowPrint(tedge.StatusFailed, out.Reason)
			case fleet.Rebooting:
				reason := "the device did not reboot into the new group"
				if err := ag.Fail(reason); err != nil {
					return err
				}
				a.workflowPrint(tedge.StatusFailed, reason)
			case fleet.Idle:
				a.workflowPrint(tedge.StatusFailed, "tandem has no firmware update job (was it installed?)")
				return nil
			default:
				a.workflowPrint(tedge.StatusFailed, fmt.Sprintf("the update is %s, not verifiable", out.State))
			}
			return ag.Done()
		},
	}
	a.addTedgeFlags(&f, verify, "tandem-tedge-workflow")
	verify.Flags().StringVar(&name, "name", "", "firmware name for the twin (the command's name)")
	verify.Flags().StringVar(&remote, "remote-url", "", "firmware URL for the twin (the command's remoteUrl)")
	verify.Flags().DurationVar(&poll, "poll", 5*time.Second, "how often to look whether the health check has decided")

	abort := &cobra.Command{
		Use:   "abort REASON",
		Short: "Give the job up: withdraw a trial that was not booted",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ag := a.workflowAgent(install.Options{})
			if err := ag.Fail(args[0]); err != nil {
				return err
			}
			a.workflowPrint(tedge.StatusFailed, args[0])
			return ag.Done()
		},
	}
	cmd.AddCommand(begin, installCmd, verify, abort)
	return cmd
}

func (a *app) workflowAgent(o install.Options) *fleet.Agent {
	return &fleet.Agent{Open: a.open, Adapter: WorkflowAdapter, Options: o}
}
