package install

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/chunker"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// scanSuffix names an index tandem computed by reading a slot it did not
// write (a factory image); it is thrown away when the slot is newer.
const scanSuffix = ".scan.tidx"

// maxIndexFile bounds an index file tandem reads.
const maxIndexFile = 64 << 20

// SlotIndex describes the chunks of a slot's content from offset 0.
type SlotIndex struct {
	Chunker  bundle.ChunkerType
	Min, Avg uint32
	Max      uint32
	Size     uint64
	Entries  []bundle.Entry
}

func (x *SlotIndex) sameParams(p *bundle.Payload) bool {
	return x.Chunker == p.Chunker && x.Min == p.ChunkMin && x.Avg == p.ChunkAvg && x.Max == p.ChunkMax
}

func marshalIndex(x *SlotIndex) []byte {
	b := []byte(indexMagic)
	b = binary.LittleEndian.AppendUint16(b, indexVersion)
	b = append(b, byte(x.Chunker), 0)
	b = binary.LittleEndian.AppendUint32(b, x.Min)
	b = binary.LittleEndian.AppendUint32(b, x.Avg)
	b = binary.LittleEndian.AppendUint32(b, x.Max)
	b = binary.LittleEndian.AppendUint64(b, x.Size)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(x.Entries)))
	for i := range x.Entries {
		b = bundle.MarshalEntry(b, &x.Entries[i])
	}
	return b
}

func parseIndex(b []byte) (*SlotIndex, error) {
	const head = 4 + 2 + 2 + 12 + 8 + 4
	if len(b) < head || string(b[:4]) != indexMagic {
		return nil, errors.New("not a tandem slot index")
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != indexVersion {
		return nil, fmt.Errorf("slot index of version %d (this tandem reads %d)", v, indexVersion)
	}
	x := &SlotIndex{Chunker: bundle.ChunkerType(b[6]), Min: binary.LittleEndian.Uint32(b[8:]),
		Avg: binary.LittleEndian.Uint32(b[12:]), Max: binary.LittleEndian.Uint32(b[16:]), Size: binary.LittleEndian.Uint64(b[20:])}
	n := int(binary.LittleEndian.Uint32(b[28:]))
	if n > (len(b)-head)/bundle.EntrySize || len(b) != head+n*bundle.EntrySize {
		return nil, errors.New("slot index has the wrong size")
	}
	x.Entries = make([]bundle.Entry, n)
	for i := range x.Entries {
		x.Entries[i] = bundle.UnmarshalEntry(b[head+i*bundle.EntrySize:])
	}
	return x, nil
}

// loadIndex reads the recorded or scanned index of a slot made with the
// chunker parameters of pl; nil when there is none (or the scan is older than
// the slot). A recorded index with other parameters does not hide a scan
// with pl's.
func loadIndex(d *device.Device, slot string, pl *bundle.Payload) *SlotIndex {
	dir := path.Join(d.Config.DataDir, IndexDir)
	for _, name := range []string{slot + ".tidx", slot + scanSuffix} {
		p := d.FS.Path(path.Join(dir, name))
		fi, err := os.Stat(p)
		if err != nil || fi.Size() > maxIndexFile {
			continue
		}
		if name == slot+scanSuffix && scanStale(d, slot, fi) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if x, err := parseIndex(b); err == nil && x.sameParams(pl) {
			return x
		}
	}
	return nil
}

// scanStale reports whether a slot file changed after its scan.
func scanStale(d *device.Device, slot string, idx os.FileInfo) bool {
	p, err := d.SlotPath(d.Config.Slots[slot])
	if err != nil {
		return true
	}
	fi, err := os.Stat(p)
	return err != nil || fi.ModTime().After(idx.ModTime())
}

// ScanSlot computes the chunk index of a slot by reading it with the given
// chunker parameters, and caches it in the data directory.
func ScanSlot(d *device.Device, slot string, ch bundle.ChunkerType, min, avg, max uint32) (*SlotIndex, error) {
	s, ok := d.Config.Slots[slot]
	if !ok {
		return nil, fmt.Errorf("no slot %q", slot)
	}
	if s.Type != config.SlotBlock && s.Type != config.SlotFile {
		return nil, fmt.Errorf("slot %s is a %s slot; only block and file slots have chunk indexes", slot, s.Type)
	}
	p, err := d.SlotPath(s)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var c *chunker.Chunker
	if ch == bundle.ChunkerFixed {
		c, err = chunker.NewFixed(bufio.NewReaderSize(f, 1<<20), int(max))
	} else {
		c, err = chunker.New(bufio.NewReaderSize(f, 1<<20), chunker.Params{Min: int(min), Avg: int(avg), Max: int(max)})
	}
	if err != nil {
		return nil, err
	}
	x := &SlotIndex{Chunker: ch, Min: min, Avg: avg, Max: max}
	for {
		data, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("scan slot %s: %w", slot, err)
		}
		x.Entries = append(x.Entries, bundle.Entry{Digest: sha256.Sum256(data), Size: uint32(len(data))})
		x.Size += uint64(len(data))
	}
	dir := path.Join(d.Config.DataDir, IndexDir)
	if err := d.FS.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return x, rootfs.WriteAtomic(d.FS, path.Join(dir, slot+scanSuffix), marshalIndex(x), 0o644)
}

// chunkLocation is where a chunk's content can be read on the device.
type chunkLocation struct {
	path   string
	offset int64
	size   uint32
	// fresh: the slot was read and indexed by this install, so the
	// location need not be checked before the fetches are planned.
	fresh bool
}

// localChunks maps chunk digests to places in the slots of the groups that
// are not being written (the active and the default group), indexing a slot
// with the payload's chunker parameters when no usable index exists.
func localChunks(d *device.Device, target string, p *bundle.Payload, scanned map[string]bool) (map[[32]byte]chunkLocation, error) {
	m := map[[32]byte]chunkLocation{}
	for _, name := range d.Config.SlotNames() {
		g, _ := d.Config.GroupOfSlot(name)
		s := d.Config.Slots[name]
		if g == target || (s.Type != config.SlotBlock && s.Type != config.SlotFile) {
			continue
		}
		sp, err := d.SlotPath(s)
		if err != nil {
			continue
		}
		x := loadIndex(d, name, p)
		if x == nil && !scanned[name] {
			scanned[name] = true
			// A scan that could not be cached is still good for this install.
			x, _ = ScanSlot(d, name, p.Chunker, p.ChunkMin, p.ChunkAvg, p.ChunkMax)
		}
		if x == nil {
			continue
		}
		var off int64
		for _, e := range x.Entries {
			if _, ok := m[e.Digest]; !ok {
				m[e.Digest] = chunkLocation{path: sp, offset: off, size: e.Size, fresh: scanned[name]}
			}
			off += int64(e.Size)
		}
	}
	return m, nil
}
