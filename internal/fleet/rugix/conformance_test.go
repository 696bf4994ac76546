package rugix_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/tandem-ota/tandem/internal/fleet/fleettest"
	"github.com/tandem-ota/tandem/internal/fleet/rugix"
	"github.com/tandem-ota/tandem/internal/install"
)

// script plays a Rugix-managed fleet's update script on the device (the
// shape of the Memfault template and the Nexigon script,
// docs/integrations/rugix-ctrl.md), through the operations the rugix-ctrl
// command line runs:
//
//  1. `system info`: refuse unless active == default;
//  2. `update install --reboot yes URL` (signature required); a failure is
//     reported with rugix-ctrl's error; a killed install is run again at
//     the script's next start (it resumes);
//  3. on the next boot, `system info`: while active != default the new
//     group runs on trial and tandem-health.service decides, so the script
//     looks again later; once active == default it runs `system commit`
//     (nothing is left to commit) and reports success when the device runs
//     the new group, else failure.
//
// A script learns the outcome from the boot state alone (Reasonless); it
// cannot cancel, and there is no server to fail.
type script struct {
	fleettest.Mailbox
	env    *fleettest.Env
	cur    *fleettest.Offer
	target string // the group the bundle went to; "" until installed
}

func (s *script) Reasonless() {}

func (s *script) report(success bool, detail string) {
	s.Put(s.cur.ID, fleettest.Report{Success: success, Detail: detail})
	s.cur, s.target = nil, ""
}

// info runs `system info --json` and reads it as jq would.
func (s *script) info(t *testing.T) (active, def string) {
	t.Helper()
	d, err := s.env.Open()
	if err != nil {
		t.Fatal(err)
	}
	info, err := rugix.SystemInfo(d)
	if err != nil {
		t.Fatalf("system info: %v", err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Boot struct{ ActiveGroup, DefaultGroup string }
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Boot.ActiveGroup, doc.Boot.DefaultGroup
}

func (s *script) Run(ctx context.Context, t *testing.T) error {
	if s.cur == nil {
		o, ok := s.Take()
		if !ok {
			return nil
		}
		s.cur = &o
		if a, d := s.info(t); a != d {
			s.report(false, fmt.Sprintf("group %s runs on trial (default %s): an update is in progress", a, d))
			return nil
		}
	}
	if s.target == "" {
		d, err := s.env.Open()
		if err != nil {
			return err
		}
		res, err := rugix.Install(ctx, d, install.Options{Source: s.cur.URL}, install.RebootYes)
		if ctx.Err() != nil {
			return ctx.Err() // killed: the next start runs the install again
		}
		if err != nil {
			s.report(false, "rugix-ctrl update install: "+err.Error())
			return nil
		}
		s.target = res.Group
		return nil // the device reboots
	}
	a, def := s.info(t)
	if a != def {
		return nil // on trial: tandem health decides; look again later
	}
	d, err := s.env.Open()
	if err != nil {
		return err
	}
	if _, err := d.Commit(); err != nil { // system commit
		return err
	}
	if a != s.target {
		s.report(false, fmt.Sprintf("the device runs group %s, not the new group %s", a, s.target))
		return nil
	}
	s.report(true, "")
	return nil
}

// rugix-ctrl under the shared conformance suite.
func TestConformance(t *testing.T) {
	fleettest.Run(t, func(t *testing.T, env *fleettest.Env) fleettest.Harness {
		return &script{env: env}
	})
}
