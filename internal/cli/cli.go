// Package cli is tandem's command line: flags, output and exit codes. Each
// command parses its flags, calls the package that owns the work (device,
// install, health, sim, bundle, bundle/spec, channel, signature, the fleet
// adapters) and prints human text or JSON; exit codes are decided in one
// place (exit.go). It holds no update, format or publishing policy: a RunE
// is flags → one call → output, and what grows beyond that belongs in the
// package below it.
package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/sim"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=...".
var Version = "dev"

// Env is what a command run needs from the process: streams and environment.
// Tests run commands in-process with their own Env.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Name is the program name (argv[0]); invoked as rugix-ctrl, tandem
	// runs its rugix-ctrl compatible command line (rugix.go).
	Name string
}

// Main runs tandem with args (without the program name) and returns the exit code.
func Main(args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	app := &app{env: env}
	root, prog := app.rootCommand(), "tandem"
	if isRugixName(env.Name) {
		app.root, app.configPath = env.Getenv("TANDEM_ROOT"), config.DefaultPath
		root, prog = app.rugixCommand(), RugixName
	}
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.Execute()
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		err = usageError{err}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %s\n", prog, oneLine(err.Error()))
		h := hint(err)
		if prog == RugixName && exitCode(err) == ExitUsage {
			h = "see rugix-ctrl --help"
		}
		if h != "" {
			fmt.Fprintf(env.Stderr, "hint: %s\n", h)
		}
	}
	return exitCode(err)
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func hint(err error) string {
	if h := config.Hint(err); h != "" {
		return h
	}
	if h := device.Hint(err); h != "" {
		return h
	}
	switch exitCode(err) {
	case ExitUsage:
		return "see tandem --help"
	case ExitPowerCut:
		return "the simulated device lost power; run `tandem sim reboot DIR` to boot it again"
	}
	return ""
}

type app struct {
	env        Env
	root       string
	configPath string
	jsonOut    bool
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "tandem",
		Short: "Robust A/B updates for embedded Linux",
		Long: `tandem updates embedded Linux devices with A/B boot groups: an update is written to the
spare group, booted once on trial, and kept only when the new system commits itself.

Every path tandem touches resolves under --root (or TANDEM_ROOT), so a whole device can be
simulated in a directory: try "tandem sim new /tmp/dev --boot-flow grub" and then
"tandem --root /tmp/dev system info".

Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration, 4 refused by a safety rule,
5 unusable boot-loader state, 6 bundle rejected, 7 health check failed, 10 simulated power cut (docs/cli.md).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().StringVar(&a.root, "root", a.env.Getenv("TANDEM_ROOT"), "root prefix: the directory every device path resolves under (env TANDEM_ROOT)")
	root.PersistentFlags().StringVar(&a.configPath, "config", config.DefaultPath, "device path of the system configuration")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.systemCommand(), a.simCommand(), a.updateCommand(), a.bundleCommand(), a.keyCommand(), a.slotsCommand(),
		a.healthCommand(), a.stateCommand(), a.menderCommand(), a.tedgeCommand(), a.hawkbitCommand(), a.memfaultCommand(),
		a.channelCommand(), a.watchCommand(), a.initCommand(), a.serveCommand(), a.adoptCommand(), a.bootCommand(), a.imageCommand())
	return root
}

// open opens the device under --root, with the power-cut switch of a
// simulated device from TANDEM_SIM_CUT and TANDEM_SIM_CUT_MODE.
func (a *app) open() (*device.Device, error) {
	opts := device.Options{Root: a.root, ConfigPath: a.configPath}
	var err error
	if opts.CutAt, opts.CutMode, err = sim.CutFromEnv(a.env.Getenv); err != nil {
		return nil, usageError{err}
	}
	opts.PauseAt, opts.PauseOut = a.env.Getenv("TANDEM_TEST_PAUSE_AT"), a.env.Stderr
	return device.Open(opts)
}

// onDevice is a RunE that opens the device under --root (open) and runs
// run on it with the command's arguments.
func (a *app) onDevice(run func(d *device.Device, args []string) error) func(*cobra.Command, []string) error {
	return func(_ *cobra.Command, args []string) error {
		d, err := a.open()
		if err != nil {
			return err
		}
		return run(d, args)
	}
}

// show prints v as one JSON document with --json, else its text form.
func (a *app) show(jsonOut bool, v any, text func(io.Writer) error) error {
	if jsonOut {
		return a.printJSON(v)
	}
	return text(a.env.Stdout)
}

// printJSON prints exactly one JSON document.
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine prints v as one line of JSON.
func (a *app) printJSONLine(v any) {
	_ = json.NewEncoder(a.env.Stdout).Encode(v)
}

func (a *app) printf(format string, args ...any) {
	fmt.Fprintf(a.env.Stdout, format, args...)
}

// group only groups cmds: alone it prints its help; an unknown subcommand is a usage error.
func group(use, short string, cmds ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(c *cobra.Command, _ []string) error { return c.Help() }}
	cmd.AddCommand(cmds...)
	return cmd
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs { return usageArgs(cobra.ExactArgs(n)) }

// usageArgs turns the error of an argument check into a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// Commands returns tandem's command tree and that of its rugix-ctrl command
// line, for build tools that write man pages and shell completions
// (tools/debpkg). They are not meant to be executed.
func Commands() (tandem, rugixCtrl *cobra.Command) {
	a := &app{env: Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}}
	return a.rootCommand(), a.rugixCommand()
}
