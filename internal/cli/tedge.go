package cli

import (
	"cmp"
	"errors"
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
	broker := cmp.Or(a.env.Getenv("TANDEM_TEDGE_BROKER"), "127.0.0.1:1883")
	cmd.Flags().StringVar(&f.broker, "broker", broker, "MQTT broker: host:port or URL (tcp://, ssl://, ws://) (env TANDEM_TEDGE_BROKER)")
	cmd.Flags().StringVar(&f.root, "topic-root", "te", "thin-edge.io MQTT topic root (mqtt.topic_root)")
	cmd.Flags().StringVar(&f.device, "device-topic-id", "device/main//", "thin-edge.io device topic id (mqtt.device_topic_id)")
	cmd.Flags().StringVar(&f.clientID, "client-id", clientID, "MQTT client id")
}

func (a *app) tedgeCommand() *cobra.Command {
	var f tedgeFlags
	var lf loopFlags
	var o install.Options
	var preferRemote bool
	var poll time.Duration
	cmd := &cobra.Command{
		Use:   "tedge [--broker HOST:PORT] [--device-topic-id device/main//]",
		Short: "Run the thin-edge.io firmware_update operation handler (MQTT)",
		Long: `Handle thin-edge.io firmware_update commands over MQTT, as a service (systemd/tandem-tedge.service).

tandem announces the capability (retained {} on te/device/main///cmd/firmware_update) and takes each
command in status init: executing (install from tedgeUrl, else remoteUrl, into the spare group, by
delta when the server answers range requests), restarting (before the reboot into the trial),
verifying (tandem health decides), successful (committed; the firmware twin published first) or
failed with a reason. The update is a job in <data-dir>/fleet/tedge.json: the handler resumes after
a reboot, crash or power cut. For tedge-agent's user-defined workflows see "tandem tedge workflow";
docs/integrations/thin-edge.md has the details.`,
		Example: `  tandem tedge
  tandem tedge --broker 192.168.1.10:1883 --prefer-remote-url`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			topics, err := tedge.ParseTopics(f.root, f.device)
			if err != nil {
				return usageError{err}
			}
			if poll <= 0 {
				return usageError{errors.New("--poll must be > 0")}
			}
			if _, err := a.open(); err != nil {
				return err // fail early on a configuration error
			}
			o.Progress.Warn = a.warn
			h, err := tedge.New(tedge.Config{
				Agent:  &fleet.Agent{Open: a.open, Adapter: tedge.Adapter, Options: o},
				Broker: f.broker, ClientID: f.clientID, Topics: topics, PreferRemoteURL: preferRemote, Log: a.logger(),
			})
			if err != nil {
				return usageError{err}
			}
			return a.runAdapter(h, tedge.Loop(poll), lf)
		},
	}
	a.addTedgeFlags(&f, cmd, "tandem-tedge")
	lf.add(cmd, a)
	fl := cmd.Flags()
	fl.BoolVar(&preferRemote, "prefer-remote-url", false, "install from remoteUrl even when the command has a tedgeUrl (for a CDN that serves ranges)")
	fl.DurationVar(&poll, "poll", 5*time.Second, "how often to look whether the health check has decided")
	addFetchFlags(fl, &o)
	cmd.AddCommand(a.tedgeWorkflowCommand())
	return cmd
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
	step := func(w *tedge.Workflow, o install.Options) error {
		o.Progress.Warn = a.warn
		w.Agent = &fleet.Agent{Open: a.open, Adapter: tedge.WorkflowAdapter, Options: o}
		w.Out = a.env.Stdout
		return a.runInvoked(w)
	}

	var begin tedge.Workflow
	beginCmd := &cobra.Command{
		Use:   "begin ID [--tedge-url URL] [--remote-url URL] [--version V]",
		Short: "Record a firmware_update command as tandem's job",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			begin.State, begin.ID = tedge.StepBegin, args[0]
			return step(&begin, install.Options{})
		},
	}
	beginCmd.Flags().StringVar(&begin.TedgeURL, "tedge-url", "", "the command's tedgeUrl")
	beginCmd.Flags().StringVar(&begin.RemoteURL, "remote-url", "", "the command's remoteUrl")
	beginCmd.Flags().StringVar(&begin.Version, "version", "", "the command's version")
	beginCmd.Flags().BoolVar(&begin.PreferRemoteURL, "prefer-remote-url", false, "install from remoteUrl even when there is a tedgeUrl")

	var o install.Options
	installCmd := &cobra.Command{
		Use:   "install",
		Short: "Install the job's bundle into the spare group and arrange the trial boot",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return step(&tedge.Workflow{State: tedge.StepInstall}, o)
		},
	}
	addFetchFlags(installCmd.Flags(), &o)

	var f tedgeFlags
	var verify tedge.Workflow
	verifyCmd := &cobra.Command{
		Use:   "verify [--name N] [--remote-url URL]",
		Short: "Wait for the health check's decision; publish the firmware twin on success",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			topics, err := tedge.ParseTopics(f.root, f.device)
			if err != nil {
				return usageError{err}
			}
			verify.State = tedge.StepVerify
			verify.PublishTwin = tedge.TwinPublisher(f.broker, f.clientID, topics)
			return step(&verify, install.Options{})
		},
	}
	a.addTedgeFlags(&f, verifyCmd, "tandem-tedge-workflow")
	verifyCmd.Flags().StringVar(&verify.FirmwareName, "name", "", "firmware name for the twin (the command's name)")
	verifyCmd.Flags().StringVar(&verify.RemoteURL, "remote-url", "", "firmware URL for the twin (the command's remoteUrl)")
	verifyCmd.Flags().DurationVar(&verify.Poll, "poll", 5*time.Second, "how often to look whether the health check has decided")

	abortCmd := &cobra.Command{
		Use:   "abort REASON",
		Short: "Give the job up: withdraw a trial that was not booted",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return step(&tedge.Workflow{State: tedge.StepAbort, Reason: args[0]}, install.Options{})
		},
	}
	cmd.AddCommand(beginCmd, installCmd, verifyCmd, abortCmd)
	return cmd
}
