package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/retry"
)

// script is an Adapter that plays a list of steps.
type script struct {
	steps  []Step
	errs   []error
	n      int
	closed bool
}

func (s *script) Name() string { return "script" }
func (s *script) Close() error { s.closed = true; return nil }
func (s *script) Step(context.Context) (Step, error) {
	i := s.n
	s.n++
	if i >= len(s.steps) {
		return Step{}, ErrStopped
	}
	return s.steps[i], s.errs[i]
}

func TestLoop(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		steps     []Step
		errs      []error
		once      bool
		wantWaits []time.Duration // exact, with Jitter < 0
		wantErr   error
		wantSteps int
	}{
		{name: "idle waits the interval, working not at all",
			steps: []Step{{Activity: ActIdle}, {Activity: ActWorking}, {Activity: ActReported}, {Activity: ActIdle, Wait: 5 * time.Minute}},
			errs:  []error{nil, nil, nil, nil}, wantWaits: []time.Duration{time.Hour, 0, 0, 5 * time.Minute}, wantErr: ErrStopped, wantSteps: 5},
		{name: "waiting is bounded",
			steps: []Step{{Activity: ActWaiting}}, errs: []error{nil}, wantWaits: []time.Duration{15 * time.Second}, wantErr: ErrStopped, wantSteps: 2},
		{name: "rebooting ends the loop",
			steps: []Step{{Activity: ActWorking}, {Activity: ActRebooting}, {Activity: ActIdle}}, errs: []error{nil, nil, nil},
			wantWaits: []time.Duration{0}, wantSteps: 2},
		{name: "a permanent error waits the interval",
			steps: []Step{{}, {Activity: ActRebooting}}, errs: []error{boom, nil}, wantWaits: []time.Duration{time.Hour}, wantSteps: 2},
		{name: "transient errors back off, Retry-After wins",
			steps:     []Step{{}, {}, {}, {Activity: ActRebooting}},
			errs:      []error{retry.Transient(boom, 0), retry.Transient(boom, 0), retry.Transient(boom, 42*time.Second), nil},
			wantWaits: []time.Duration{-1, -2, 42 * time.Second}, wantSteps: 4},
		{name: "once returns the step's error",
			steps: []Step{{Activity: ActIdle}}, errs: []error{boom}, once: true, wantErr: boom, wantSteps: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &script{steps: tc.steps, errs: tc.errs}
			var waits []time.Duration
			l := Loop{Interval: time.Hour, Jitter: -1, Once: tc.once, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Retry: retry.Policy{Min: time.Second, Max: time.Minute},
				Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
			_, err := l.Run(context.Background(), a)
			if !errors.Is(err, tc.wantErr) || tc.wantErr == nil && err != nil {
				t.Fatalf("Run: %v, want %v", err, tc.wantErr)
			}
			if a.n != tc.wantSteps || !a.closed {
				t.Fatalf("%d steps (closed %v), want %d", a.n, a.closed, tc.wantSteps)
			}
			if len(waits) != len(tc.wantWaits) {
				t.Fatalf("waits %v, want %v", waits, tc.wantWaits)
			}
			for i, w := range tc.wantWaits {
				// -n: the n-th backoff, anywhere in its upper half.
				if w < 0 {
					hi := time.Second << (-w - 1)
					if waits[i] < hi/2 || waits[i] > hi {
						t.Errorf("wait %d = %v, want the backoff in [%v, %v]", i, waits[i], hi/2, hi)
					}
				} else if waits[i] != w {
					t.Errorf("wait %d = %v, want %v", i, waits[i], w)
				}
			}
		})
	}
}

func TestLoopStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &script{steps: []Step{{Activity: ActIdle}}, errs: []error{nil}}
	l := Loop{Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Sleep: func(ctx context.Context, _ time.Duration) error {
			cancel()
			return fmt.Errorf("stopped: %w", ctx.Err())
		}}
	if _, err := l.Run(ctx, a); err != nil || a.n != 1 {
		t.Fatalf("Run after cancel: %v after %d steps", err, a.n)
	}
}

// TestLoopStaggerAndAttrs: a staggered loop waits at most the jitter before
// its first step (not with Once); a step's attributes reach its record.
func TestLoopStaggerAndAttrs(t *testing.T) {
	var waits []time.Duration
	var out strings.Builder
	a := &script{steps: []Step{{Activity: ActWorking, Message: "did it", Attrs: []slog.Attr{slog.String("version", "2.0.0")}}}, errs: []error{nil}}
	l := Loop{Interval: time.Hour, Jitter: time.Minute, Stagger: true, Log: slog.New(slog.NewTextHandler(&out, nil)),
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
	if _, err := l.Run(context.Background(), a); !errors.Is(err, ErrStopped) {
		t.Fatalf("Run: %v", err)
	}
	if len(waits) != 2 || waits[0] < 0 || waits[0] > time.Minute || waits[1] != 0 {
		t.Fatalf("waits %v, want a first one within the jitter, then none after a working step", waits)
	}
	if !strings.Contains(out.String(), `msg="did it" adapter=script activity=working version=2.0.0`) {
		t.Errorf("log: %s", out.String())
	}
	waits = nil
	l.Once = true
	if _, err := l.Run(context.Background(), &script{steps: []Step{{Activity: ActIdle}}, errs: []error{nil}}); err != nil || len(waits) != 0 {
		t.Fatalf("once: %v, waits %v", err, waits)
	}
}
