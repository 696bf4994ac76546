package memfault_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet"
	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit"
	"github.com/tandem-ota/tandem/internal/fleet/hawkbit/ddiserver"
	"github.com/tandem-ota/tandem/internal/fleet/memfault"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/retry"
)

// releases plays Memfault's releases API for the conformance suite: it
// offers the last Offer to devices that run another version. The API has
// no report endpoint: Memfault learns that a release runs from the
// current_version of the next query (success), and a failure only as the
// device staying on its version — the poller keeps it in its job, which is
// what Report reads.
type releases struct {
	srv     *httptest.Server
	p       *memfault.Poller
	mu      sync.Mutex
	offer   fleettest.Offer
	ids     map[string]string // offer id → version
	current []string          // current_version of each query
	fail    int
}

func (r *releases) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		switch r.fail % 3 {
		case 2:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		default:
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close() // a reset connection
			}
		}
		return
	}
	if req.URL.Path != "/api/v0/releases/latest" || req.Header.Get("Memfault-Project-Key") != "pk-1" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	cur := req.URL.Query().Get("current_version")
	r.current = append(r.current, cur)
	if r.offer.Version == "" || cur == r.offer.Version {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	fmt.Fprintf(w, `{"version":%q,"artifacts":[{"filename":%q,"file_size":%d,"url":%q}]}`,
		r.offer.Version, filepath.Base(r.offer.Path), r.offer.Size, r.offer.URL)
}

func (r *releases) Offer(_ *testing.T, o fleettest.Offer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offer, r.ids[o.ID] = o, o.Version
	r.current = nil
}

func (r *releases) Run(ctx context.Context, t *testing.T) error {
	return fleettest.Stretch(ctx, r.p, fleettest.Loop(t))
}

func (r *releases) Report(t *testing.T, id string) (fleettest.Report, bool) {
	r.mu.Lock()
	v := r.ids[id]
	for _, cur := range r.current {
		if cur == v {
			r.mu.Unlock()
			return fleettest.Report{Success: true}, true
		}
	}
	r.mu.Unlock()
	o, err := r.p.Agent.Outcome()
	if err != nil {
		t.Fatal(err)
	}
	if o.State == fleet.Failure && o.Job.Version == v {
		return fleettest.Report{Detail: o.Reason}, true
	}
	return fleettest.Report{}, false
}

func (r *releases) FailNext(_ *testing.T, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = n
}

// suiteConfig is the suite's device (project key pk-1, serial SN42) with
// the endpoint key (api-url or ddi-url) set to url.
func suiteConfig(t *testing.T, key, url string) *memfault.Config {
	t.Helper()
	c, err := memfault.ParseConfig([]byte(`project-key = "pk-1"
device-serial = "SN42"
hardware-version = "evt"
software-type = "linux"
` + key + ` = "` + url + `"
`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestConformance runs the releases-API poller under the conformance suite.
func TestConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		r := &releases{ids: map[string]string{}}
		r.srv = httptest.NewServer(r)
		t.Cleanup(r.srv.Close)
		c := suiteConfig(t, "api-url", r.srv.URL)
		var err error
		if r.p, err = memfault.NewPoller(c, env.Open, install.Options{}, fleettest.Logger(t)); err != nil {
			t.Fatal(err)
		}
		return r
	})
}

// ddi runs `tandem memfault ddi` — the hawkBit adapter with Memfault's
// conventions — against the DDI test server configured as Memfault's
// endpoint (tenant default, the project key as gateway token).
type ddi struct {
	srv *ddiserver.Server
	ad  *hawkbit.Adapter
}

func (h *ddi) Offer(_ *testing.T, o fleettest.Offer) {
	h.srv.Add(ddiserver.Action{ID: o.ID, Controller: "SN42", Version: o.Version,
		Artifacts: []ddiserver.Artifact{{Filename: filepath.Base(o.Path), URL: o.URL, Size: o.Size}}})
}

func (h *ddi) Run(ctx context.Context, t *testing.T) error {
	return fleettest.Stretch(ctx, h.ad, fleettest.Loop(t))
}

func (h *ddi) Report(_ *testing.T, id string) (fleettest.Report, bool) {
	r, ok := h.srv.Result(id)
	return fleettest.Report{Success: r.Success && !r.Canceled, Detail: strings.Join(r.Details, "; ")}, ok
}

func (h *ddi) Cancel(_ *testing.T, id string) { h.srv.Cancel(id) }

func (h *ddi) FailNext(_ *testing.T, n int) {
	for i := range n {
		h.srv.Fail(1, []int{503, 429, 0}[i%3], "1")
	}
}

// TestDDIConformance runs Memfault's DDI mode under the conformance suite.
func TestDDIConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		srv := ddiserver.New(t, ddiserver.Options{Tenant: "default", GatewayToken: "pk-1"})
		hc, err := suiteConfig(t, "ddi-url", srv.URL).DDIConfig()
		if err != nil {
			t.Fatal(err)
		}
		ad, err := hawkbit.New(hc, env.Open, install.Options{}, fleettest.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ad.Client.HTTP, ad.CancelPoll = srv.Client(), 20*time.Millisecond
		ad.Client.Retry = retry.Policy{Attempts: 6, Min: 5 * time.Millisecond, Max: 50 * time.Millisecond, MaxRetryAfter: 20 * time.Millisecond}
		return &ddi{srv: srv, ad: ad}
	})
}
