package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tandem-ota/tandem/internal/bundle/spec"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
)

func (a *app) slotsCommand() *cobra.Command {
	var chunkSize string
	var fixed bool
	index := &cobra.Command{
		Use:   "index SLOT",
		Short: "Index a slot's chunks ahead of time (delta installs otherwise do it on first need)",
		Long: `Read a block or file slot and record the digest of every chunk of its content, with the
chunker parameters bundles use (content-defined, average --chunk-size). Delta installs copy
chunks found in these indexes from the local slot instead of downloading them. Slots tandem
wrote are indexed at install time; this command is for slots it never wrote, such as the
factory image, and is done automatically on the first delta install.`,
		Args: exactArgs(1),
		RunE: a.onDevice(func(d *device.Device, args []string) error {
			ch, p, err := spec.Chunking(chunkSize, fixed)
			if err != nil {
				return usageError{fmt.Errorf("--chunk-size: %w", err)}
			}
			x, err := install.ScanSlot(d, args[0], ch, uint32(p.Min), uint32(p.Avg), uint32(p.Max))
			if err != nil {
				return err
			}
			a.printf("indexed slot %s: %d chunks, %s\n", args[0], len(x.Entries), install.HumanBytes(x.Size))
			return nil
		}),
	}
	index.Flags().StringVar(&chunkSize, "chunk-size", "64K", "average chunk size of the bundles this device gets")
	index.Flags().BoolVar(&fixed, "fixed-chunks", false, "fixed-size chunks")
	return group("slots", "Slot chunk indexes (for delta updates)", index)
}
