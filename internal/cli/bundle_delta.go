package cli

import (
	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/patch"
)

func (a *app) bundleDeltaCommand() *cobra.Command {
	var o patch.Options
	var keys, trust, images []string
	cmd := &cobra.Command{
		Use:   "delta NEW.tandem (--from OLD.tandem | --from-image ALIAS=IMAGE... --from-version V) --key KEY",
		Short: "Write NEW.tandem.patches/<old bundle hash>.tpatch (and version-V.tpatch): a signed patch from a previous release (docs/delta.md)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Bundle = args[0]
			if err := o.Load(keys, trust, images); err != nil {
				return usageError{err}
			}
			res, err := patch.Create(o)
			if err == nil {
				a.printf("%s", res)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From.Bundle, "from", "", "the previous release's bundle")
	f.StringArrayVar(&images, "from-image", nil, "ALIAS=IMAGE: the previous release's image of a slot (repeatable)")
	f.StringVar(&o.From.Version, "from-version", "", "the version of the previous release")
	f.StringArrayVar(&keys, "key", nil, "PATH[:CHAIN]: sign with this PEM key (repeatable)")
	f.StringArrayVar(&trust, "trust", nil, "verify the bundles with this key or certificate (default: the --key's)")
	f.StringVar(&o.OutDir, "out-dir", "", "write the patch here (default: NEW.tandem.patches)")
	return cmd
}
