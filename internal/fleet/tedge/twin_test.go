package tedge_test

import (
	"context"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet/tedge"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// TestTwinPublisher checks that the workflow's twin is published retained
// on the device's twin topic.
func TestTwinPublisher(t *testing.T) {
	b := testutil.StartMosquitto(t)
	topics, err := tedge.ParseTopics("te", "device/main//")
	if err != nil {
		t.Fatal(err)
	}
	publish := tedge.TwinPublisher(b.Addr, "twin-test", topics)
	if err := publish(context.Background(), tedge.Twin{Name: "os", Version: "2.0.0", URL: "http://x/v2.tandem"}); err != nil {
		t.Fatal(err)
	}
	want := `{"name":"os","version":"2.0.0","url":"http://x/v2.tandem"}`
	if got := string(retained(t, b.Addr, "te/device/main///twin/firmware", 10*time.Second)); got != want {
		t.Errorf("twin = %s, want %s", got, want)
	}
}

// TestLoop checks the handler's loop: poll paces the wait for a decision.
func TestLoop(t *testing.T) {
	if l := tedge.Loop(3 * time.Second); l.Waiting != 3*time.Second || l.Interval != 30*time.Second || l.Once {
		t.Errorf("loop: %+v", l)
	}
}
