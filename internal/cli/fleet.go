package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/fleet"
)

// loopFlags are the flags every fleet adapter command has.
type loopFlags struct {
	once bool
}

func (f *loopFlags) add(cmd *cobra.Command, a *app) {
	cmd.Flags().BoolVar(&f.once, "once", false, "do one step (poll, report, install or reboot), print what it did and exit")
	cmd.Flags().BoolVar(&a.jsonOut, "json", false, "log one JSON object per line (log/slog's JSON form)")
}

// logger is the adapters' logger: text lines on stdout, or JSON lines with
// --json.
func (a *app) logger() *slog.Logger {
	if a.jsonOut {
		return slog.New(slog.NewJSONHandler(a.env.Stdout, nil))
	}
	return slog.New(slog.NewTextHandler(a.env.Stdout, nil))
}

// runAdapter runs ad under l until SIGINT or SIGTERM (exit 0), the device
// reboots, or with --once after one step (whose activity it prints).
func (a *app) runAdapter(ad fleet.Adapter, l fleet.Loop, f loopFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l.Once, l.Log = f.once, a.logger()
	st, err := l.Run(ctx, ad)
	if err != nil || !f.once {
		return err
	}
	if a.jsonOut {
		a.printJSONLine(map[string]string{"event": "step", "adapter": ad.Name(), "activity": string(st.Activity)})
	} else {
		a.printf("%s\n", st.Activity)
	}
	return nil
}

// runInvoked runs an adapter that its fleet manager invokes once per state
// (the Mender update module, a tedge-agent workflow step): one step under
// fleet.Loop, with no signal handling of its own (a killed step exits
// non-zero, as the invoker expects). The adapter writes its protocol's
// output itself; the step's error is the command's.
func (a *app) runInvoked(ad fleet.Adapter) error {
	_, err := fleet.Loop{Once: true, Log: slog.New(slog.DiscardHandler)}.Run(context.Background(), ad)
	return err
}

// warn prints an install warning on stderr.
func (a *app) warn(s string) { fmt.Fprintf(a.env.Stderr, "tandem: warning: %s\n", s) }
