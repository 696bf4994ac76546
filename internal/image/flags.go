package image

import (
	"errors"

	"github.com/spf13/pflag"
	"github.com/tandem-ota/tandem/internal/bundle/spec"
)

// Flags are `tandem image build`'s options as its command line gives them
// (docs/image.md): Options checks them, Run builds.
type Flags struct {
	Spec, RootFS, Out, Bundle, BootFlow string
	JSON                                bool
}

// Define adds the flags to fs.
func (f *Flags) Define(fs *pflag.FlagSet) {
	fs.StringVar(&f.Spec, "spec", "", "the image spec (TOML, docs/image.md)")
	fs.StringVar(&f.RootFS, "rootfs", "", "the root file system: a directory or a .tar, .tar.gz or .tar.zst")
	fs.StringVar(&f.Out, "out", "", "the disk image to write")
	fs.StringVar(&f.Bundle, "bundle", "", "the bundle to write (default: --out with the extension .tandem)")
	fs.StringVar(&f.BootFlow, "boot-flow", "", "grub, uboot, systemd-boot or rpi-tryboot (replaces the spec's boot-flow)")
	fs.BoolVar(&f.JSON, "json", false, "print one JSON document")
}

// Options checks the flags (its errors name them) and returns the build
// options; sourceDateEpoch is $SOURCE_DATE_EPOCH (the bundle's creation time).
func (f *Flags) Options(sourceDateEpoch string, progress func(step string)) (Options, error) {
	if f.Spec == "" || f.RootFS == "" || f.Out == "" {
		return Options{}, errors.New("give --spec, --rootfs and --out")
	}
	created, err := spec.Created(sourceDateEpoch)
	return Options{RootFS: f.RootFS, Out: f.Out, Bundle: f.Bundle, Created: created, Progress: progress}, err
}

// Run loads the spec (with --boot-flow) and builds (Build).
func (f *Flags) Run(o Options) (*Result, error) {
	s, err := LoadSpec(f.Spec, f.BootFlow)
	if err != nil {
		return nil, err
	}
	return Build(s, o)
}
