package fleettest

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
)

// Drive runs a under l (fleet.Loop, the loop the command line runs it
// under) for one stretch of the device's life, as a Harness's Run does:
// until a step requests the reboot, reports a final outcome or waits for
// the health check — the device's life must move on before the adapter can
// do more — or ctx ends. l's zero Interval and Waiting become short waits
// fit for a test; a nil Log logs to t.
func Drive(ctx context.Context, t testing.TB, a fleet.Adapter, l fleet.Loop) error {
	if l.Interval == 0 {
		l.Interval = 50 * time.Millisecond
	}
	if l.Waiting == 0 {
		l.Waiting = 50 * time.Millisecond
	}
	if l.Retry.Min == 0 {
		l.Retry.Min, l.Retry.Max = 10*time.Millisecond, 100*time.Millisecond
	}
	if l.Log == nil {
		l.Log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	_, err := l.Run(ctx, &settling{Adapter: a, stop: stop})
	return err
}

// settling ends its loop after a step that reported or waits.
type settling struct {
	fleet.Adapter
	stop context.CancelFunc
}

func (s *settling) Step(ctx context.Context) (fleet.Step, error) {
	st, err := s.Adapter.Step(ctx)
	if err == nil && (st.Activity == fleet.ActReported || st.Activity == fleet.ActWaiting) {
		s.stop()
	}
	return st, err
}

func (s *settling) Close() error {
	if c, ok := s.Adapter.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
