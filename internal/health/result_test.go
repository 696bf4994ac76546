package health_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/health"
)

// TestResultText checks the line tandem health prints for each verdict and
// which verdicts are errors (exit 7 in the CLI).
func TestResultText(t *testing.T) {
	for _, tc := range []struct {
		r         health.Result
		line, err string
	}{
		{health.Result{Verdict: health.NotOnTrial, Group: "a"}, "nothing to decide: group a is the default", ""},
		{health.Result{Verdict: health.Committed, Group: "b"}, "healthy: group b is committed", ""},
		{health.Result{Verdict: health.Failing, Group: "b", Message: "app down", Left: 90*time.Second + time.Millisecond},
			"unhealthy: app down (1m30s left before the rollback)", "health check of group b failing (1m30s left): app down"},
		{health.Result{Verdict: health.RolledBack, Group: "b", Message: "app down"},
			"rolled back: app down; rebooting into the committed group", "app down"},
	} {
		if got := tc.r.String(); got != tc.line {
			t.Errorf("%s: String() = %q, want %q", tc.r.Verdict, got, tc.line)
		}
		err := tc.r.Err()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: Err() = %v, want nil", tc.r.Verdict, err)
		case tc.err != "" && (err == nil || err.Error() != tc.err || !errors.Is(err, health.ErrUnhealthy)):
			t.Errorf("%s: Err() = %v, want %q wrapping ErrUnhealthy", tc.r.Verdict, err, tc.err)
		}
	}
}
