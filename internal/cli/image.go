package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/image"
)

func (a *app) imageCommand() *cobra.Command {
	var fl image.Flags
	cmd := &cobra.Command{
		Use:   "build --spec image.toml --rootfs ROOTFS.tar|DIR --out disk.img [--bundle out.tandem]",
		Short: "Write a bootable A/B factory disk image and the signed bundle of its version (docs/image.md)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			o, err := fl.Options(a.env.Getenv("SOURCE_DATE_EPOCH"), func(step string) { fmt.Fprintf(a.env.Stderr, "image: %s\n", step) })
			if err != nil {
				return usageError{err}
			}
			r, err := fl.Run(o)
			if err != nil {
				return err
			}
			return a.show(fl.JSON, r, r.WriteText)
		},
	}
	fl.Define(cmd.Flags())
	return group("image", "Build factory disk images (on a build host)", cmd)
}
