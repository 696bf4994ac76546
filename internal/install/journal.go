package install

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"path"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// JournalFile records the install in progress, relative to the data
// directory. It is keyed by the bundle hash, not the URL (CDN and pre-signed
// URLs change): when the same bundle is installed into the same group again,
// the chunks already in the target slot are re-verified and kept instead of
// downloaded. Because every kept chunk is re-verified by its digest, the
// journal needs no fsync per chunk; it only says that reading the target
// slot is worth it.
const JournalFile = "install-journal.json"

type journal struct {
	BundleHash string    `json:"bundleHash"`
	Group      string    `json:"group"`
	StartedAt  time.Time `json:"startedAt"`
}

func journalPath(d *device.Device) string { return path.Join(d.Config.DataDir, JournalFile) }

// resuming reports whether an earlier install of the same bundle into the
// same group was interrupted, and records this one.
func startJournal(d *device.Device, hash bundle.Hash, group string) (bool, error) {
	var j journal
	if b, err := d.FS.ReadFile(journalPath(d)); err == nil && len(b) < 4096 {
		_ = json.Unmarshal(b, &j)
	}
	resume := j.BundleHash == hash.String() && j.Group == group
	b, _ := json.Marshal(journal{BundleHash: hash.String(), Group: group, StartedAt: time.Now().UTC()})
	if err := d.FS.MkdirAll(d.Config.DataDir, 0o755); err != nil {
		return false, err
	}
	return resume, rootfs.WriteAtomic(d.FS, journalPath(d), b, 0o644)
}

// endJournal removes the journal once the install is recorded.
func endJournal(d *device.Device) error {
	if err := d.FS.Remove(journalPath(d)); err != nil && !rootfs.IsNotExist(err) {
		return err
	}
	return d.FS.SyncDir(d.Config.DataDir)
}

// inPlace finds the chunks an interrupted install already wrote to the
// target slot at their final offsets (each re-verified by its digest).
func inPlace(slotPath string, entries []bundle.Entry, into map[[32]byte]chunkLocation) {
	f, err := os.Open(slotPath)
	if err != nil {
		return
	}
	defer f.Close()
	var buf []byte
	var off int64
	for _, e := range entries {
		if _, ok := into[e.Digest]; !ok {
			if cap(buf) < int(e.Size) {
				buf = make([]byte, e.Size)
			}
			b := buf[:e.Size]
			if _, err := f.ReadAt(b, off); err == nil && sha256.Sum256(b) == e.Digest {
				into[e.Digest] = chunkLocation{path: slotPath, offset: off, size: e.Size}
			}
		}
		off += int64(e.Size)
	}
}
