package tedge

import (
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
)

// Loop is the loop the handler runs under: each Step waits for its own
// event, so the interval only paces a handler with nothing to do; while the
// health check decides a trial, the handler looks again every poll.
func Loop(poll time.Duration) fleet.Loop {
	return fleet.Loop{Interval: 30 * time.Second, Waiting: poll}
}
