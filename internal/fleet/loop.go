package fleet

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/tandem-ota/tandem/internal/retry"
)

// Adapter is one fleet manager's protocol: the only part of an integration
// that is not shared. It translates the fleet side's offers and the
// device's state into Agent calls, one step at a time; Loop owns everything
// around the steps (scheduling, backoff after errors, stopping, logging).
// Every adapter runs under the conformance suite in fleettest.
//
// An adapter may also implement io.Closer: Loop.Run closes it when it ends
// (a broker connection, say).
type Adapter interface {
	// Name names the adapter: its job file is <data-dir>/fleet/<Name>.json
	// and its log records carry adapter=<Name>.
	Name() string
	// Step does the next thing the device's state and the fleet side ask
	// for — report a final outcome, start, resume or cancel an install,
	// request the trial and reboot — and says what it did. A step lasts at
	// most one protocol exchange, one event or one install. A transient
	// failure (retry.Transient) is retried with backoff; any other error
	// is logged and the loop waits its interval.
	Step(ctx context.Context) (Step, error)
}

// Activity is what one Step did.
type Activity string

// Activities of a Step.
const (
	ActIdle      Activity = "idle"      // nothing to do: step again after the interval
	ActWorking   Activity = "working"   // progress was made: step again at once
	ActWaiting   Activity = "waiting"   // the health check or a window decides soon: step again within Loop.Waiting
	ActRebooting Activity = "rebooting" // the device reboots into the trial: the loop ends
	ActReported  Activity = "reported"  // a final outcome was sent: step again at once
)

// Step is what one Adapter.Step did.
type Step struct {
	Activity Activity
	// Wait, when not zero, replaces the loop's wait before the next step:
	// the polling interval the server asked for, its Retry-After.
	Wait time.Duration
	// Message says what happened, for the log (optional); Attrs are
	// further attributes of that log record (the release's version, say).
	Message string
	Attrs   []slog.Attr
}

// Loop runs an Adapter: a step, then a wait, until the context ends, the
// device reboots, or (Once) after one step.
type Loop struct {
	// Interval is the wait after an idle step or a failed one (default
	// 1 h); each wait is drawn from Interval ± Jitter (default Interval/10,
	// negative = none) so that a fleet does not poll in step.
	Interval, Jitter time.Duration
	// Waiting bounds the wait after a waiting step (default 15 s).
	Waiting time.Duration
	// Retry spaces the steps after transient failures (retry.Default when
	// zero): backoff doubling per consecutive failure, or the server's
	// Retry-After.
	Retry retry.Policy
	// Once makes Run return after one step (with that step's error).
	Once bool
	// Stagger waits a random part of the jitter before the first step
	// (not with Once), so that a fleet powered on together does not poll
	// together.
	Stagger bool
	// Log receives one record per step that did something (a step that
	// is idle or waiting without a Message did nothing) and per error
	// (nil = slog.Default()).
	Log *slog.Logger
	// Sleep waits between steps (nil = retry.Sleep); tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Run steps a until ctx ends (nil), the adapter asks for a reboot (nil) or
// returns ErrStopped (that error), or, with Once, after one step (its
// error). It returns the last step.
func (l Loop) Run(ctx context.Context, a Adapter) (Step, error) {
	if c, ok := a.(io.Closer); ok {
		defer c.Close()
	}
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("adapter", a.Name())
	sleep := l.Sleep
	if sleep == nil {
		sleep = retry.Sleep
	}
	if l.Stagger && !l.Once {
		if err := sleep(ctx, stagger(l.interval(), l.Jitter)); err != nil {
			return Step{}, nil
		}
	}
	fails := 0
	for {
		st, err := a.Step(ctx)
		if ctx.Err() != nil {
			return st, nil
		}
		attrs := st.Attrs
		if st.Activity != "" {
			attrs = append([]slog.Attr{slog.String("activity", string(st.Activity))}, attrs...)
		}
		if err != nil && !l.Once { // with Once the caller gets the error
			log.LogAttrs(ctx, slog.LevelError, err.Error(), attrs...)
		} else if st.Message != "" || st.Activity != ActIdle && st.Activity != ActWaiting {
			log.LogAttrs(ctx, slog.LevelInfo, st.Message, attrs...)
		}
		if l.Once || st.Activity == ActRebooting && err == nil || errors.Is(err, ErrStopped) {
			return st, err
		}
		wait := l.next(st, err, &fails)
		if err := sleep(ctx, wait); err != nil {
			return st, nil
		}
	}
}

// next returns the wait after st (with err), counting consecutive
// transient failures in fails.
func (l Loop) next(st Step, err error, fails *int) time.Duration {
	if after, ok := retry.IsTransient(err); ok {
		*fails++
		return l.Retry.Wait(*fails, after)
	}
	*fails = 0
	interval := l.interval()
	if st.Wait > 0 && err == nil {
		interval = st.Wait
	}
	switch {
	case err != nil:
	case st.Activity == ActWorking || st.Activity == ActReported:
		return 0
	case st.Activity == ActWaiting:
		waiting := l.Waiting
		if waiting <= 0 {
			waiting = 15 * time.Second
		}
		interval = min(interval, waiting)
	}
	return jitter(interval, l.Jitter)
}

func (l Loop) interval() time.Duration {
	if l.Interval <= 0 {
		return time.Hour
	}
	return l.Interval
}

// stagger is the wait before the first step: up to the jitter of the
// interval.
func stagger(interval, j time.Duration) time.Duration {
	if j == 0 {
		j = interval / 10
	}
	if j <= 0 {
		return 0
	}
	return time.Duration(rand.Float64() * float64(j))
}

func jitter(d, j time.Duration) time.Duration {
	if j == 0 {
		j = d / 10
	}
	if j <= 0 {
		return d
	}
	return max(0, d+time.Duration((2*rand.Float64()-1)*float64(j)))
}

// ErrStopped is what a Step returns when the adapter cannot go on (e.g.
// the fleet side closed its connection for good); Loop.Run returns it.
var ErrStopped = errors.New("the adapter stopped")
