package watch

import (
	"reflect"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/config"
)

// TestOverride checks that the command line wins over the file for the keys
// it gives, and that trust files, headers and labels are added.
func TestOverride(t *testing.T) {
	c := &Config{Channel: "stable", DeviceID: "d1", CAFile: "/ca", Interval: config.Duration{Duration: time.Hour},
		Trust: []string{"/a.pub"}, Headers: []string{"A: 1"}, Labels: map[string]string{"ring": "a", "site": "x"}}
	o := &Config{Channel: "", DeviceID: "d2", CAFile: "/other", Interval: config.Duration{Duration: time.Minute},
		Jitter: &config.Duration{}, AllowDowngrade: true, Trust: []string{"/b.pub"}, Headers: []string{"B: 2"},
		Labels: map[string]string{"ring": "b"}}
	given := map[string]bool{"channel": true, "device-id": true, "interval": true, "jitter": true}
	c.Override(o, func(k string) bool { return given[k] })
	want := &Config{Channel: "", DeviceID: "d2", CAFile: "/ca", Interval: config.Duration{Duration: time.Minute},
		Jitter: &config.Duration{}, Trust: []string{"/a.pub", "/b.pub"}, Headers: []string{"A: 1", "B: 2"},
		Labels: map[string]string{"ring": "b", "site": "x"}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
}

// TestParseLabels checks --label NAME=VALUE.
func TestParseLabels(t *testing.T) {
	m, err := ParseLabels([]string{"ring=beta", "empty=", "ring=alpha"})
	if err != nil || !reflect.DeepEqual(m, map[string]string{"ring": "alpha", "empty": ""}) {
		t.Errorf("got %v, %v", m, err)
	}
	if m, err := ParseLabels(nil); m != nil || err != nil {
		t.Errorf("no labels: got %v, %v", m, err)
	}
	for _, bad := range []string{"ring", "=beta"} {
		if _, err := ParseLabels([]string{bad}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
