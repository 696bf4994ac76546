package hawkbit_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit/ddiserver"
	"github.com/tandem-ota/tandem/internal/retry"
)

const controller = "dev-1"

// harness runs the hawkBit adapter, under fleet.Loop, against the DDI test
// server.
type harness struct {
	srv *ddiserver.Server
	ad  *hawkbit.Adapter
}

func testRetry() retry.Policy {
	return retry.Policy{Attempts: 6, Min: 5 * time.Millisecond, Max: 50 * time.Millisecond, MaxRetryAfter: 2 * time.Second}
}

func newAdapter(t *testing.T, srv *ddiserver.Server, open func() (*device.Device, error)) *hawkbit.Adapter {
	t.Helper()
	log := fleettest.Logger(t)
	return &hawkbit.Adapter{
		Client: &hawkbit.Client{Server: srv.URL, Tenant: srv.Tenant(), ControllerID: controller,
			Authorization: "TargetToken secret-1", HTTP: srv.Client(), Retry: testRetry(), Log: log},
		Agent:      &fleet.Agent{Open: open, Adapter: hawkbit.AdapterName},
		Attributes: map[string]string{"site": "test"},
		CancelPoll: 20 * time.Millisecond,
		Log:        log,
	}
}

func (h *harness) Offer(_ *testing.T, o fleettest.Offer) {
	h.srv.Add(ddiserver.Action{ID: o.ID, Controller: controller, Version: o.Version,
		Artifacts: []ddiserver.Artifact{{Filename: filepath.Base(o.Path), URL: o.URL, Size: o.Size}}})
}

// Run runs the adapter under the loop until it rebooted, reported, waits
// or has nothing to do.
func (h *harness) Run(ctx context.Context, t *testing.T) error {
	return fleettest.Stretch(ctx, h.ad, fleettest.Loop(t))
}

func (h *harness) Report(_ *testing.T, id string) (fleettest.Report, bool) {
	r, ok := h.srv.Result(id)
	if !ok {
		return fleettest.Report{}, false
	}
	d := strings.Join(r.Details, "; ")
	if r.Canceled {
		d = "canceled: " + d
	}
	return fleettest.Report{Success: r.Success && !r.Canceled, Detail: d}, true
}

func (h *harness) Cancel(_ *testing.T, id string) { h.srv.Cancel(id) }

func (h *harness) FailNext(_ *testing.T, n int) {
	for i := range n {
		switch i % 3 {
		case 0:
			h.srv.Fail(1, 503, "")
		case 1:
			h.srv.Fail(1, 429, "1")
		default:
			h.srv.Fail(1, 0, "") // connection reset
		}
	}
}

func TestConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		srv := ddiserver.New(t, ddiserver.Options{TargetToken: "secret-1"})
		return &harness{srv: srv, ad: newAdapter(t, srv, env.Open)}
	})
}
