package install

import (
	"path"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// IndexDir is where slot chunk indexes live, relative to the data directory.
const IndexDir = "index"

// indexMagic starts a slot index file: "TIDX", then u16 version
// (indexVersion), u8 chunker, u8 reserved, u32 min, avg, max, u64 size, u32
// count, then count chunk table entries (the 40-byte entries of bundle format
// version 2), describing the slot's content from offset 0.
const indexMagic = "TIDX"

// indexVersion is the slot index format. Version 1 held the 80-byte entries
// of bundle format 1; an index of another version is ignored (a recorded
// index as if there were none, a scan is made again), never misparsed.
const indexVersion = 2

// saveSlotIndex records the chunk index of a slot written from payload p.
func saveSlotIndex(d *device.Device, slot string, p *bundle.Payload, entries []bundle.Entry) error {
	b := marshalIndex(&SlotIndex{Chunker: p.Chunker, Min: p.ChunkMin, Avg: p.ChunkAvg, Max: p.ChunkMax, Size: p.Size, Entries: entries})
	dir := path.Join(d.Config.DataDir, IndexDir)
	if err := d.FS.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return rootfs.WriteAtomic(d.FS, path.Join(dir, slot+".tidx"), b, 0o644)
}

// forgetSlotIndex removes the chunk index of a slot before the slot is
// written, so that an interrupted write never leaves an index that describes
// content the slot no longer holds.
func forgetSlotIndex(d *device.Device, slot string) error {
	dir := path.Join(d.Config.DataDir, IndexDir)
	if err := d.FS.Remove(path.Join(dir, slot+scanSuffix)); err != nil && !rootfs.IsNotExist(err) {
		return err
	}
	if err := d.FS.Remove(path.Join(dir, slot+".tidx")); err != nil {
		if rootfs.IsNotExist(err) {
			return nil
		}
		return err
	}
	return d.FS.SyncDir(dir)
}
