package device_test

import (
	"errors"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
)

// TestWithLock checks that fn runs and its error is returned, that the
// lock is released afterwards, and that a hung simulated system is refused
// before fn runs.
func TestWithLock(t *testing.T) {
	root, open := newSim(t)
	d := open()
	ran := false
	if err := d.WithLock(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("WithLock: ran %v, %v", ran, err)
	}
	boom := errors.New("boom")
	if err := d.WithLock(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: %v", err)
	}
	unlock, err := d.Lock()
	if err != nil {
		t.Fatalf("the lock was not released: %v", err)
	}
	unlock()
	sd, err := device.ReadSimState(root)
	if err != nil || sd == nil {
		t.Fatalf("sim state: %v %v", sd, err)
	}
	sd.Hung = true
	if err := device.WriteSimState(root, sd); err != nil {
		t.Fatal(err)
	}
	ran = false
	if err := open().WithLock(func() error { ran = true; return nil }); !errors.Is(err, device.ErrRefused) || ran {
		t.Errorf("hung system: ran %v, %v; want ErrRefused", ran, err)
	}
}
