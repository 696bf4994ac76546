package sim

import (
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
)

// TestOptionsCheck checks the options of tandem sim new.
func TestOptionsCheck(t *testing.T) {
	ok := Options{BootFlow: config.FlowGrub, UBootBackend: config.UBootBackendFile, Attempts: 1}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.BootFlow = "lilo" }, "--boot-flow"},
		{func(o *Options) { o.UBootBackend = "" }, "--uboot-backend"},
		{func(o *Options) { o.Attempts = 0 }, "--attempts"},
		{func(o *Options) { o.Attempts = config.MaxAttempts + 1 }, "--attempts"},
	} {
		o := ok
		tc.edit(&o)
		if err := o.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want one naming %s", o, err, tc.want)
		}
	}
}
