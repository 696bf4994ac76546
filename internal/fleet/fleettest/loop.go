package fleettest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/retry"
)

// Loop is a fleet.Loop for tests: waits of milliseconds (the interval, the
// trial's wait, the backoff and any Retry-After) and records in t's log.
func Loop(t testing.TB) fleet.Loop {
	return fleet.Loop{Interval: 20 * time.Millisecond, Waiting: 20 * time.Millisecond,
		Retry: retry.Policy{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxRetryAfter: 20 * time.Millisecond},
		Log:   Logger(t)}
}

// Logger is a slog.Logger writing to t's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

// Stretch runs a under l — the loop the command line runs — for one
// stretch of the device's life, as a Harness's Run does: until a step did
// something other than working (it rebooted, reported, waits, or found
// nothing to do), failed for good, failed transiently maxTransient times
// in a row (the loop would go on backing off), or ctx ended. Transient
// failures are retried by the loop, with its backoff. It returns the last
// step's error.
// a is closed at the end of the stretch when it is an io.Closer, as when
// its process ends.
func Stretch(ctx context.Context, a fleet.Adapter, l fleet.Loop) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &stretch{Adapter: a, stop: cancel}
	l.Once = false
	if _, err := l.Run(ctx, s); err != nil {
		return err
	}
	return s.err
}

// stretch ends the loop (through its context) after a step that ends a
// stretch.
type stretch struct {
	fleet.Adapter
	stop  func()
	err   error
	fails int
}

// maxTransient is the number of transient failures in a row that ends a
// stretch.
const maxTransient = 5

func (s *stretch) Step(ctx context.Context) (fleet.Step, error) {
	st, err := s.Adapter.Step(ctx)
	s.fails++
	_, transient := retry.IsTransient(err)
	if !transient {
		s.fails = 0
	}
	if err != nil && !transient || err == nil && st.Activity != fleet.ActWorking || s.fails >= maxTransient {
		s.err = err
		s.stop()
	}
	return st, err
}

func (s *stretch) Close() error {
	if c, ok := s.Adapter.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
