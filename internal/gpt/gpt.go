// Package gpt reads a GUID partition table (UEFI specification, chapter 5)
// and grows its last partition to the end of a larger disk, crash-safely.
//
// The table is untrusted input (a disk image from anywhere): every field is
// checked against the disk size and fixed limits before use, and both CRCs
// are verified. Read follows the Linux kernel's choice of table: the primary
// header (LBA 1) when it and its entries are valid, else the backup header at
// the last sector of the disk.
//
// Grow returns the writes that move the backup table to the real end of the
// disk and enlarge one partition, in the order that keeps the disk readable
// after a power cut at any point (see Grow).
package gpt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"unicode/utf16"
)

// Limits of what Read accepts.
const (
	// MaxEntries bounds the number of partition entries of a table (the
	// specification's minimum array is 128 entries; tools make 128).
	MaxEntries = 1024
	// MaxEntrySize bounds one partition entry (128 bytes in every table
	// seen; the specification allows 128·2ⁿ).
	MaxEntrySize = 1024
	// MaxEntriesBytes bounds the entry array read into memory.
	MaxEntriesBytes = 256 << 10
)

// headerSize is the size of the header fields of revision 1.0.
const headerSize = 92

// signature is the header's first eight bytes.
const signature = "EFI PART"

// ErrNoTable: the disk holds no valid GUID partition table.
var ErrNoTable = errors.New("no valid GUID partition table")

// Entry is one used partition entry.
type Entry struct {
	// Index is the entry's place in the array, from 0; Linux numbers the
	// partition Index+1.
	Index int
	Type  [16]byte
	GUID  [16]byte // the partition's unique GUID (PARTUUID)
	First uint64   // first LBA
	Last  uint64   // last LBA, inclusive
	Attrs uint64
	Name  string
}

// Table is a GUID partition table as read from a disk.
type Table struct {
	SectorSize int
	// Sectors is the disk's size in sectors.
	Sectors uint64
	// Primary is true when the primary header was valid (else the backup at
	// the disk's last sector was used).
	Primary bool
	// From the header that was used:
	DiskGUID    [16]byte
	FirstUsable uint64
	LastUsable  uint64
	// AlternateLBA is where the primary header says its backup is (or, for
	// a table read from the backup, 1).
	AlternateLBA uint64
	// Entries are the used entries, in array order.
	Entries []Entry

	header    []byte // the header sector used, as read
	entries   []byte // the whole entry array, as read
	entrySize uint32
	numEnt    uint32
}

// GUIDString formats a GUID as the kernel and blkid show it (PARTUUID=):
// the first three fields little-endian, lower-case hex.
func GUIDString(g [16]byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(g[0:]), binary.LittleEndian.Uint16(g[4:]), binary.LittleEndian.Uint16(g[6:]), g[8:10], g[10:16])
}

// Read reads the table of a disk of size bytes with the given logical
// sector size (512 or 4096; 0 is 512).
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if sectorSize == 0 {
		sectorSize = 512
	}
	if sectorSize != 512 && sectorSize != 1024 && sectorSize != 2048 && sectorSize != 4096 {
		return nil, fmt.Errorf("sector size %d: want 512, 1024, 2048 or 4096", sectorSize)
	}
	sectors := uint64(size) / uint64(sectorSize)
	if size <= 0 || sectors < 6 {
		return nil, fmt.Errorf("%w: the disk is too small (%d bytes)", ErrNoTable, size)
	}
	t, perr := readAt(r, sectors, sectorSize, 1)
	if perr == nil {
		t.Primary = true
		return t, nil
	}
	t, berr := readAt(r, sectors, sectorSize, sectors-1)
	if berr == nil {
		return t, nil
	}
	return nil, fmt.Errorf("%w: primary: %v; backup at the last sector: %v", ErrNoTable, perr, berr)
}

// readAt reads and checks the header at lba and its entries.
func readAt(r io.ReaderAt, sectors uint64, ss int, lba uint64) (*Table, error) {
	h := make([]byte, ss)
	if _, err := r.ReadAt(h, int64(lba)*int64(ss)); err != nil {
		return nil, fmt.Errorf("read the header at LBA %d: %w", lba, err)
	}
	if string(h[:8]) != signature {
		return nil, fmt.Errorf("no signature at LBA %d", lba)
	}
	le := binary.LittleEndian
	hsize := le.Uint32(h[12:])
	if hsize < headerSize || int(hsize) > ss {
		return nil, fmt.Errorf("header size %d at LBA %d", hsize, lba)
	}
	if crc := le.Uint32(h[16:]); crc != headerCRC(h[:hsize]) {
		return nil, fmt.Errorf("header CRC mismatch at LBA %d", lba)
	}
	t := &Table{SectorSize: ss, Sectors: sectors, header: h}
	myLBA := le.Uint64(h[24:])
	t.AlternateLBA = le.Uint64(h[32:])
	t.FirstUsable, t.LastUsable = le.Uint64(h[40:]), le.Uint64(h[48:])
	copy(t.DiskGUID[:], h[56:72])
	entLBA := le.Uint64(h[72:])
	t.numEnt, t.entrySize = le.Uint32(h[80:]), le.Uint32(h[84:])
	last := sectors - 1
	switch {
	case myLBA != lba:
		return nil, fmt.Errorf("header at LBA %d says it is at LBA %d", lba, myLBA)
	case t.numEnt == 0 || t.numEnt > MaxEntries:
		return nil, fmt.Errorf("%d partition entries: want 1 to %d", t.numEnt, MaxEntries)
	case t.entrySize < 128 || t.entrySize > MaxEntrySize || t.entrySize&(t.entrySize-1) != 0:
		return nil, fmt.Errorf("partition entry size %d: want 128·2ⁿ up to %d", t.entrySize, MaxEntrySize)
	case uint64(t.numEnt)*uint64(t.entrySize) > MaxEntriesBytes:
		return nil, fmt.Errorf("partition entry array of %d bytes: the limit is %d", uint64(t.numEnt)*uint64(t.entrySize), MaxEntriesBytes)
	case t.FirstUsable > t.LastUsable || t.LastUsable >= last:
		return nil, fmt.Errorf("usable LBAs %d to %d on a disk of %d sectors", t.FirstUsable, t.LastUsable, sectors)
	case t.AlternateLBA == lba || t.AlternateLBA > last || t.AlternateLBA == 0:
		return nil, fmt.Errorf("alternate LBA %d", t.AlternateLBA)
	}
	esec := entrySectors(t.numEnt, t.entrySize, ss)
	if entLBA < 2 || entLBA+esec > sectors || (entLBA <= lba && lba < entLBA+esec) ||
		(entLBA+esec > t.FirstUsable && entLBA <= t.LastUsable) {
		return nil, fmt.Errorf("partition entries at LBA %d overlap the header or the usable space", entLBA)
	}
	t.entries = make([]byte, esec*uint64(ss))
	if _, err := r.ReadAt(t.entries, int64(entLBA)*int64(ss)); err != nil {
		return nil, fmt.Errorf("read the partition entries at LBA %d: %w", entLBA, err)
	}
	arr := t.entries[:uint64(t.numEnt)*uint64(t.entrySize)]
	if crc := le.Uint32(h[88:]); crc != crc32.ChecksumIEEE(arr) {
		return nil, fmt.Errorf("partition entry array CRC mismatch (header at LBA %d)", lba)
	}
	for i := range int(t.numEnt) {
		e := arr[i*int(t.entrySize):]
		var en Entry
		copy(en.Type[:], e[0:16])
		if en.Type == ([16]byte{}) {
			continue
		}
		en.Index = i
		copy(en.GUID[:], e[16:32])
		en.First, en.Last, en.Attrs = le.Uint64(e[32:]), le.Uint64(e[40:]), le.Uint64(e[48:])
		en.Name = decodeName(e[56:128])
		if en.First > en.Last || en.First < t.FirstUsable || en.Last > t.LastUsable {
			return nil, fmt.Errorf("partition %d spans LBAs %d to %d, outside the usable %d to %d", i+1, en.First, en.Last, t.FirstUsable, t.LastUsable)
		}
		t.Entries = append(t.Entries, en)
	}
	return t, nil
}

// decodeName decodes a partition name (UTF-16LE, NUL-terminated).
func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func entrySectors(n, size uint32, ss int) uint64 {
	return (uint64(n)*uint64(size) + uint64(ss) - 1) / uint64(ss)
}

// headerCRC is the CRC32 of the header fields with the CRC field zeroed.
func headerCRC(h []byte) uint32 {
	c := bytes.Clone(h)
	binary.LittleEndian.PutUint32(c[16:], 0)
	return crc32.ChecksumIEEE(c)
}

// Partition returns the used entry Linux numbers n (from 1), or nil.
func (t *Table) Partition(n int) *Entry {
	for i := range t.Entries {
		if t.Entries[i].Index == n-1 {
			return &t.Entries[i]
		}
	}
	return nil
}

// Write is one write of a table change: Data at byte offset Off.
type Write struct {
	Off  int64
	Data []byte
	What string
}

// Align is the alignment of a grown partition's end: its size after the
// growth ends on a whole MiB of the disk (as partitioning tools align
// starts), so a file system of 4 KiB blocks fills it.
const Align = 1 << 20

// Grow returns the writes that grow partition n (Linux's number, from 1)
// to the end of the disk — to the last usable LBA a backup table at the
// disk's real end leaves, rounded down to a whole MiB — and the partition's
// new last LBA. Nothing to write (nil) when it would not grow by at least
// one MiB. Only the primary table is trusted: a table read from its backup
// is refused (repair it first). Partition n must be the last partition on
// the disk.
//
// The writes, in order, each to be made durable before the next (Apply):
//  1. the new entry array of the backup table, before the disk's last sector;
//  2. the new backup header, at the disk's last sector;
//  3. the new primary entry array;
//  4. the new primary header (LBA 1);
//  5. zeros over the old backup header, when it was elsewhere (it now lies
//     inside the grown partition);
//  6. the protective MBR's size field, when it is a protective MBR.
//
// A cut before 4 completes leaves the old primary valid (the kernel reads
// it first): the old table. A cut during 3 or 4 leaves a primary whose CRCs
// fail: the kernel, like Read, then reads the backup at the disk's last
// sector, the new table. After 4, the new primary. So every prefix of the
// writes, torn or not, reads as the old table or the new one.
func (t *Table) Grow(n int) ([]Write, uint64, error) {
	if !t.Primary {
		return nil, 0, errors.New("the primary partition table is damaged (the backup was read): repair it with sgdisk or sfdisk first")
	}
	e := t.Partition(n)
	if e == nil {
		return nil, 0, fmt.Errorf("partition %d is not in the partition table", n)
	}
	for _, o := range t.Entries {
		if o.Index != e.Index && o.Last > e.Last {
			return nil, 0, fmt.Errorf("partition %d is not the last on the disk (partition %d ends after it)", n, o.Index+1)
		}
	}
	ss := uint64(t.SectorSize)
	esec := entrySectors(t.numEnt, t.entrySize, t.SectorSize)
	last := t.Sectors - 1
	bEntLBA := last - esec
	newLastUsable := bEntLBA - 1
	if newLastUsable < t.LastUsable {
		return nil, 0, fmt.Errorf("the disk (%d sectors) is smaller than its partition table says (last usable LBA %d)", t.Sectors, t.LastUsable)
	}
	align := max(Align/ss, 1)
	end := (newLastUsable + 1) / align * align // exclusive
	if end < e.Last+1+align {
		return nil, e.Last, nil
	}
	newLast := end - 1

	le := binary.LittleEndian
	entries := bytes.Clone(t.entries)
	le.PutUint64(entries[uint64(e.Index)*uint64(t.entrySize)+40:], newLast)
	arrCRC := crc32.ChecksumIEEE(entries[:uint64(t.numEnt)*uint64(t.entrySize)])
	hsize := le.Uint32(t.header[12:])
	mk := func(my, alt, entLBA uint64) []byte {
		h := bytes.Clone(t.header)
		le.PutUint64(h[24:], my)
		le.PutUint64(h[32:], alt)
		le.PutUint64(h[48:], newLastUsable)
		le.PutUint64(h[72:], entLBA)
		le.PutUint32(h[88:], arrCRC)
		le.PutUint32(h[16:], headerCRC(h[:hsize]))
		return h
	}
	pEntLBA := le.Uint64(t.header[72:])
	ws := []Write{
		{Off: int64(bEntLBA * ss), Data: entries, What: "backup partition entries"},
		{Off: int64(last * ss), Data: mk(last, 1, bEntLBA), What: "backup header"},
		{Off: int64(pEntLBA * ss), Data: entries, What: "primary partition entries"},
		{Off: int64(ss), Data: mk(1, last, pEntLBA), What: "primary header"},
	}
	if t.AlternateLBA != last {
		ws = append(ws, Write{Off: int64(t.AlternateLBA * ss), Data: make([]byte, ss), What: "old backup header (zeroed)"})
	}
	return ws, newLast, nil
}

// ProtectiveMBR returns the write that sets the size of a protective MBR's
// partition (sector 0, read as mbr) to the disk's size, or nil when mbr is
// not a protective MBR (a hybrid one is left alone) or is right already.
func (t *Table) ProtectiveMBR(mbr []byte) *Write {
	if len(mbr) < 512 || mbr[510] != 0x55 || mbr[511] != 0xaa {
		return nil
	}
	idx := -1
	for i := range 4 {
		p := mbr[446+16*i : 446+16*i+16]
		switch {
		case p[4] == 0xee && binary.LittleEndian.Uint32(p[8:]) == 1 && idx < 0:
			idx = i
		case p[4] != 0:
			return nil // a hybrid MBR: not touched
		}
	}
	if idx < 0 {
		return nil
	}
	off := 446 + 16*idx + 12
	size := uint32(min(t.Sectors-1, 0xffffffff))
	if binary.LittleEndian.Uint32(mbr[off:]) == size {
		return nil
	}
	m := bytes.Clone(mbr[:512])
	binary.LittleEndian.PutUint32(m[off:], size)
	return &Write{Off: 0, Data: m, What: "protective MBR"}
}

// Device is what Apply writes to: a disk opened for writing.
type Device interface {
	io.WriterAt
	Sync() error
}

// Apply makes the writes in order, each made durable (Sync) before the next.
func Apply(d Device, ws []Write) error {
	for _, w := range ws {
		if _, err := d.WriteAt(w.Data, w.Off); err != nil {
			return fmt.Errorf("write the %s: %w", w.What, err)
		}
		if err := d.Sync(); err != nil {
			return fmt.Errorf("flush the %s: %w", w.What, err)
		}
	}
	return nil
}
