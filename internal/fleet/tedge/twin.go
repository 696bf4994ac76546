package tedge

import (
	"context"
	"encoding/json"
	"time"
)

// TwinPublisher returns a Workflow.PublishTwin that publishes the firmware
// twin, retained, on topics' twin topic through the MQTT broker as
// clientID, giving up after a minute.
func TwinPublisher(broker, clientID string, topics Topics) func(context.Context, Twin) error {
	return func(ctx context.Context, twin Twin) error {
		b, err := json.Marshal(twin)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return PublishRetained(ctx, broker, clientID, topics.Twin(), b)
	}
}
