package bundle_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
)

// issue 11, hardening 5: a file that is not a bundle (here the start of
// /etc/shadow, which a broker once named as the bundle) is refused without
// its bytes in the error, which an adapter publishes as the failure reason.
func TestBadMagicEchoesNothing(t *testing.T) {
	secret := "root:$y$j9T$Xq3hunter2:19700:0:99999:7:::\n"
	_, err := bundle.HeaderSize([]byte(secret))
	if !errors.Is(err, bundle.ErrVersion) {
		t.Fatalf("HeaderSize of a non-bundle: %v, want ErrVersion", err)
	}
	for _, leak := range []string{"root", "$y$", "hunter"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the error %q quotes the file's bytes (%q)", err, leak)
		}
	}
}
