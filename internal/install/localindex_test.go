package install_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/install"
)

// A slot whose recorded index was made with other chunk sizes than a delta
// bundle's is scanned once with the bundle's; the next install uses that
// scan instead of scanning the slot again.
func TestDeltaScanBesideRecordedIndex(t *testing.T) {
	dir := newDevice(t, devOpts{})
	// Group b gets v1 from a bundle with 4x smaller chunks than fx.sysV2's,
	// so its recorded index does not fit fx.sysV2.
	var small bytes.Buffer
	meta := bundle.Header{Compatible: compatible, Version: "1.0.0", Created: time.Now().Unix()}
	specs := []bundle.PayloadSpec{{Name: "system", Kind: bundle.KindSlot, Target: "system",
		Chunker: bundle.ChunkerBuzhash, ChunkSize: chunkAvg / 4, Source: bytes.NewReader(fx.imgV1)}}
	if _, err := bundle.Write(&small, meta, specs, bundle.Options{Level: bundle.LevelDefault, Workers: 2, TempDir: fx.tmp, Sign: fx.sign}); err != nil {
		t.Fatal(err)
	}
	mustInstall(t, dir, small.Bytes(), install.Options{}, install.RebootSet)
	if g := reboot(t, dir); g != "b" {
		t.Fatalf("booted %s", g)
	}
	commit(t, dir)
	idx := filepath.Join(dir, "var/lib/tandem", install.IndexDir)
	if _, err := os.Stat(filepath.Join(idx, "system-b.tidx")); err != nil {
		t.Fatalf("no recorded index: %v", err)
	}

	url := serve(t, fx.sysV2, nil)
	var reused []int64
	var scans []os.FileInfo
	for range 2 {
		res, err := installURL(t, dir, url, install.Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkSlot(t, dir, "a", fx.imgV2)
		reused = append(reused, res.Transfer.BytesReused)
		fi, err := os.Stat(filepath.Join(idx, "system-b.scan.tidx"))
		if err != nil {
			t.Fatalf("no scan of system-b: %v", err)
		}
		scans = append(scans, fi)
	}
	if reused[0] == 0 || reused[1] != reused[0] {
		t.Errorf("bytes reused: %v, want the same non-zero count twice", reused)
	}
	if !os.SameFile(scans[0], scans[1]) {
		t.Errorf("system-b was scanned again though its scan with the bundle's chunk sizes is cached")
	}
}
