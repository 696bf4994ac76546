package rugix

import (
	"github.com/spf13/pflag"
	"github.com/tandem-ota/tandem/internal/install"
)

// InstallFlags are the flags of rugix-ctrl's `update install` that tandem
// accepts (docs/integrations/rugix-ctrl.md); any other is a usage error.
type InstallFlags struct {
	// Options holds what the flags set directly (trust, target group,
	// delta); Parse adds the bundle hash.
	Options                          install.Options
	reboot, bundleHash, verifyBundle string
}

// Define adds the flags to fs.
func (f *InstallFlags) Define(fs *pflag.FlagSet) {
	o := &f.Options
	fs.StringVar(&f.reboot, "reboot", string(install.RebootYes), "yes, no, set or deferred (= set)")
	fs.StringVar(&f.bundleHash, "bundle-hash", "", "accept the bundle with this tandem bundle hash instead of a signature")
	fs.StringVar(&f.verifyBundle, "verify-bundle", "", "the same as --bundle-hash (rugix-ctrl 0.8 name)")
	fs.BoolVar(&o.Trust.Insecure, "insecure-skip-bundle-verification", false, "install without verifying the bundle (never in production)")
	fs.StringVar(&o.Group, "boot-group", "", "target group (default: the only spare group)")
	fs.StringArrayVar(&o.Trust.Files, "root-cert", nil, "extra trusted public key or root certificate (PEM, repeatable)")
	fs.BoolVar(&o.HTTP.NoDelta, "disable-range-queries", false, "download the whole bundle even when the server supports ranges")
}

// Parse checks the flags (ParseInstallFlags), sets the bundle hash in
// Options and returns the reboot mode.
func (f *InstallFlags) Parse() (install.Reboot, error) {
	mode, hash, err := ParseInstallFlags(f.reboot, f.bundleHash, f.verifyBundle)
	f.Options.Trust.BundleHash = hash
	return mode, err
}
