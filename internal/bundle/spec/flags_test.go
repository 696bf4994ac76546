package spec

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/signature"
)

// TestSlotPayloads checks the payloads of --slot ALIAS=IMAGE.
func TestSlotPayloads(t *testing.T) {
	ps, err := SlotPayloads([]string{"system=a.img", "boot=b=c.img"}, "4K", true)
	if err != nil || len(ps) != 2 {
		t.Fatalf("got %+v, %v", ps, err)
	}
	if p := ps[1]; p.Name != "boot" || p.Target != "boot" || p.File != "b=c.img" || p.Kind != bundle.KindSlot ||
		p.Chunker != bundle.ChunkerFixed || p.ChunkSize != 4096 {
		t.Errorf("payload 2: %+v", p)
	}
	if ps, _ := SlotPayloads([]string{"system=a.img"}, "64K", false); ps[0].Chunker != bundle.ChunkerBuzhash {
		t.Errorf("default chunker: %v", ps[0].Chunker)
	}
	for _, bad := range []string{"system", "=a.img", "system="} {
		if _, err := SlotPayloads([]string{bad}, "64K", false); err == nil || !strings.Contains(err.Error(), "--slot") {
			t.Errorf("%q: %v, want an error naming --slot", bad, err)
		}
	}
	if _, err := SlotPayloads(nil, "64K", false); err == nil {
		t.Error("no slot: no error")
	}
	if _, err := SlotPayloads([]string{"system=a.img"}, "12Q", false); err == nil || !strings.Contains(err.Error(), "--chunk-size") {
		t.Errorf("bad chunk size: %v", err)
	}
}

// TestChunking checks the chunker of --chunk-size and --fixed-chunks.
func TestChunking(t *testing.T) {
	if ch, p, err := Chunking("64K", false); err != nil || ch != bundle.ChunkerBuzhash || p.Min != 16<<10 || p.Avg != 64<<10 || p.Max != 256<<10 {
		t.Errorf("64K: %v %+v %v", ch, p, err)
	}
	if ch, p, err := Chunking("4K", true); err != nil || ch != bundle.ChunkerFixed || p.Min != 4096 || p.Max != 4096 {
		t.Errorf("4K fixed: %v %+v %v", ch, p, err)
	}
	if _, _, err := Chunking("x", false); err == nil {
		t.Error("x: no error")
	}
}

// TestCreated checks SOURCE_DATE_EPOCH.
func TestCreated(t *testing.T) {
	if n, err := Created("1700000000"); n != 1700000000 || err != nil {
		t.Errorf("got %d, %v", n, err)
	}
	if n, err := Created(""); err != nil || time.Since(time.Unix(n, 0)) > time.Minute {
		t.Errorf("unset: got %d, %v", n, err)
	}
	if _, err := Created("yesterday"); err == nil {
		t.Error("yesterday: no error")
	}
}

// TestSigner checks that Signer signs with every key, and that no key is
// no signer.
func TestSigner(t *testing.T) {
	if s, err := Signer(nil); s != nil || err != nil {
		t.Errorf("no keys: got a signer %t, %v", s != nil, err)
	}
	name := filepath.Join(t.TempDir(), "k")
	if err := signature.GenerateKeyFiles(name); err != nil {
		t.Fatal(err)
	}
	sign, err := Signer([]string{name + ".key", name + ".key"})
	if err != nil {
		t.Fatal(err)
	}
	if sigs, err := sign(bundle.Hash{1}); err != nil || len(sigs) != 2 {
		t.Errorf("got %d signatures, %v", len(sigs), err)
	}
	if _, err := Signer([]string{name + ".missing"}); err == nil {
		t.Error("a missing key: no error")
	}
}
