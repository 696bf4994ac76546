package health

import (
	"fmt"
	"time"
)

// String words r as `tandem health` prints it without --json: one line
// (without its newline) saying what was decided.
func (r Result) String() string {
	switch r.Verdict {
	case NotOnTrial:
		return fmt.Sprintf("nothing to decide: group %s is the default", r.Group)
	case Committed:
		return fmt.Sprintf("healthy: group %s is committed", r.Group)
	case Failing:
		return fmt.Sprintf("unhealthy: %s (%s left before the rollback)", r.Message, r.Left.Round(time.Second))
	case RolledBack:
		return fmt.Sprintf("rolled back: %s; rebooting into the committed group", r.Message)
	}
	return ""
}

// Err is nil for a result that is a success (NotOnTrial, Committed), and
// otherwise an error that wraps ErrUnhealthy and says why.
func (r Result) Err() error {
	if r.Verdict != RolledBack && r.Verdict != Failing {
		return nil
	}
	return unhealthyError{r}
}

// unhealthyError is a trial the health check did not accept.
type unhealthyError struct{ res Result }

func (e unhealthyError) Error() string {
	if e.res.Verdict == Failing {
		return fmt.Sprintf("health check of group %s failing (%s left): %s", e.res.Group, e.res.Left.Round(time.Second), e.res.Message)
	}
	return e.res.Message
}

func (e unhealthyError) Unwrap() error { return ErrUnhealthy }
