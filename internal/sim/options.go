package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tandem-ota/tandem/internal/bundle/spec"
	"github.com/tandem-ota/tandem/internal/config"
)

// Flows are the boot flows a simulated device can have.
var Flows = []string{config.FlowGrub, config.FlowUBoot, config.FlowRPiTryboot, config.FlowSystemdBoot, config.FlowCustom,
	config.FlowMenderGrub, config.FlowMenderUBoot, config.FlowRAUCGrub, config.FlowRAUCUBoot, config.FlowRugixGrub}

// Check checks options as `tandem sim new` gives them (its errors name the
// command's flags): a known boot flow and uboot back end, a number of
// trial attempts from 1 to config.MaxAttempts, and SlotSizeText, which it
// parses into SlotSize.
func (o *Options) Check() error {
	if !slices.Contains(Flows, o.BootFlow) {
		return fmt.Errorf("--boot-flow %q: want one of %s", o.BootFlow, strings.Join(Flows, ", "))
	}
	if o.UBootBackend != config.UBootBackendFile && o.UBootBackend != config.UBootBackendFwSetenv {
		return fmt.Errorf("--uboot-backend %q: want file or fw-setenv", o.UBootBackend)
	}
	if o.BootCounting && o.BootFlow != config.FlowSystemdBoot {
		return fmt.Errorf("--boot-counting: only for --boot-flow %s", config.FlowSystemdBoot)
	}
	if o.Attempts < 1 || o.Attempts > config.MaxAttempts {
		return fmt.Errorf("--attempts %d: want 1..%d", o.Attempts, config.MaxAttempts)
	}
	if o.SlotSizeText != "" {
		n, err := spec.ParseSize(o.SlotSizeText)
		if err != nil {
			return fmt.Errorf("--slot-size: %w", err)
		}
		o.SlotSize = n
	}
	return nil
}
