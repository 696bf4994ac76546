package device

import (
	"errors"

	"github.com/tandem-ota/tandem/internal/bootflow"
)

// Hint returns what the user can do about a device error err (wrapping
// ErrIncomplete, ErrNoActiveGroup or bootflow.ErrBootState), or "".
func Hint(err error) string {
	switch {
	case errors.Is(err, ErrIncomplete):
		return "install the bundle into that group again (tandem update install …); --force-incomplete overrides for a manual repair"
	case errors.Is(err, ErrNoActiveGroup):
		return "the boot script must put tandem.group=<group> on the kernel command line (docs/boot-flows.md)"
	case errors.Is(err, bootflow.ErrBootState):
		return "is the boot partition mounted at boot-flow.boot-dir? docs/boot-flows.md says what each file must hold"
	}
	return ""
}
