package bundle

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// oneFrame checks that b is exactly one zstd frame (RFC 8878, 3.1.1): a
// frame header, blocks up to the one marked last, the content checksum when
// the header announces one, and nothing after. Skippable frames, frames
// that need a dictionary and frames whose header declares a content size
// other than size are refused, and with checksum, frames without a content
// checksum (format 3). It only walks the block headers; the decoder checks
// the blocks themselves, and the checksum.
func oneFrame(b []byte, size uint32, checksum bool) error {
	var h zstd.Header
	if err := h.Decode(b); err != nil {
		return err
	}
	switch {
	case h.Skippable:
		return errors.New("a skippable frame")
	case h.DictionaryID != 0:
		return errors.New("the frame needs a dictionary")
	case checksum && !h.HasCheckSum:
		return errors.New("the frame has no content checksum")
	case h.HasFCS && h.FrameContentSize != uint64(size):
		return fmt.Errorf("the frame holds %d bytes, the table says %d", h.FrameContentSize, size)
	}
	off := h.HeaderSize
	for {
		if len(b)-off < 3 {
			return errors.New("the frame ends inside a block header")
		}
		bh := int(b[off]) | int(b[off+1])<<8 | int(b[off+2])<<16
		off += 3
		last, n := bh&1 == 1, bh>>3
		switch (bh >> 1) & 3 {
		case 0, 2: // raw and compressed blocks: n bytes follow
		case 1: // RLE block: one byte, repeated n times
			n = 1
		default:
			return errors.New("a block of the reserved type")
		}
		if n > len(b)-off {
			return errors.New("the frame ends inside a block")
		}
		off += n
		if last {
			break
		}
	}
	if h.HasCheckSum {
		off += 4
	}
	switch {
	case off > len(b):
		return errors.New("the frame ends inside its checksum")
	case off < len(b):
		return fmt.Errorf("%d bytes after the frame", len(b)-off)
	}
	return nil
}
