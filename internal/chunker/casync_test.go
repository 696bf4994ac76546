package chunker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/testutil"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden-*.txt from casync's output")

// .caibx layout (casync src/caformat.h), all fields little-endian u64:
// an INDEX object {size=48, type, feature_flags, chunk_size_min, avg, max},
// a TABLE object header {size=UINT64_MAX, type}, items {end offset, 32-byte
// chunk id}, and a 40-byte tail {0, 0, index offset, table size, marker}.
const (
	caFormatIndex      = 0x96824d9c7b129ff9
	caFormatTable      = 0xe75b9e112f17417d
	caFormatTableTail  = 0x4b4f050e5549ecd1
	caIndexSize        = 48
	caTableHeaderSize  = 16
	caTableItemSize    = 8 + 32
	caTableTailSize    = 40
	caDigestSHA256Flag = 0x1000000000000000 // CA_FORMAT_SHA512_256 is 0x2000000000000000
)

type caibx struct {
	flags         uint64
	min, avg, max int
	ends          []int
	ids           [][32]byte
}

func parseCaibx(b []byte) (*caibx, error) {
	le := binary.LittleEndian
	if len(b) < caIndexSize+caTableHeaderSize+caTableTailSize {
		return nil, fmt.Errorf("caibx too short: %d bytes", len(b))
	}
	if s, ty := le.Uint64(b), le.Uint64(b[8:]); s != caIndexSize || ty != caFormatIndex {
		return nil, fmt.Errorf("index header size %d type %#x", s, ty)
	}
	x := &caibx{
		flags: le.Uint64(b[16:]),
		min:   int(le.Uint64(b[24:])),
		avg:   int(le.Uint64(b[32:])),
		max:   int(le.Uint64(b[40:])),
	}
	tb := b[caIndexSize:]
	if s, ty := le.Uint64(tb), le.Uint64(tb[8:]); s != math.MaxUint64 || ty != caFormatTable {
		return nil, fmt.Errorf("table header size %#x type %#x", s, ty)
	}
	body := tb[caTableHeaderSize : len(tb)-caTableTailSize]
	if len(body)%caTableItemSize != 0 {
		return nil, fmt.Errorf("table body of %d bytes is not a whole number of items", len(body))
	}
	tail := tb[len(tb)-caTableTailSize:]
	if le.Uint64(tail) != 0 || le.Uint64(tail[8:]) != 0 ||
		le.Uint64(tail[16:]) != caIndexSize ||
		le.Uint64(tail[24:]) != uint64(len(tb)) ||
		le.Uint64(tail[32:]) != caFormatTableTail {
		return nil, fmt.Errorf("bad table tail % x", tail)
	}
	prev := 0
	for item := body; len(item) > 0; item = item[caTableItemSize:] {
		end := int(le.Uint64(item))
		if end <= prev {
			return nil, fmt.Errorf("table offsets not increasing: %d after %d", end, prev)
		}
		x.ends = append(x.ends, end)
		x.ids = append(x.ids, [32]byte(item[8:40]))
		prev = end
	}
	return x, nil
}

// casyncBoundaries runs `casync make` on data and returns the chunk end
// offsets of the resulting .caibx, after checking its header and chunk ids.
func casyncBoundaries(t *testing.T, casync string, dir string, data []byte, p Params) []int {
	t.Helper()
	in := filepath.Join(dir, "input.bin")
	idx := filepath.Join(dir, "out.caibx")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(idx)
	cmd := exec.Command(casync, casyncArgs(filepath.Join(dir, "store"), p, idx, in)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, out)
	}
	b, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	x, err := parseCaibx(b)
	if err != nil {
		t.Fatalf("parsing casync's index: %v", err)
	}
	if x.min != p.Min || x.avg != p.Avg || x.max != p.Max {
		t.Fatalf("casync recorded chunk sizes %d:%d:%d, asked for %v", x.min, x.avg, x.max, p)
	}
	if x.flags&caDigestSHA256Flag == 0 {
		t.Fatalf("casync index feature flags %#x lack the SHA-256 flag", x.flags)
	}
	// Chunk ids are the SHA-256 of the chunk data: proof that the offsets
	// were read right.
	prev := 0
	for i, end := range x.ends {
		if end > len(data) || sha256.Sum256(data[prev:end]) != x.ids[i] {
			t.Fatalf("casync chunk %d [%d,%d): id does not match the data", i, prev, end)
		}
		prev = end
	}
	if prev != len(data) {
		t.Fatalf("casync chunks cover %d of %d bytes", prev, len(data))
	}
	return x.ends
}

func casyncArgs(store string, p Params, idx, in string) []string {
	return []string{"make", "--store=" + store, "--chunk-size=" + p.String(), "--digest=sha256", idx, in}
}

// docTar returns a tar of the regular files under a few system directories,
// in walk order, up to about limit bytes: real, mixed data that casync and
// the chunker see identically.
func docTar(t *testing.T, limit int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	errFull := fmt.Errorf("full")
	for _, root := range []string{"/usr/share/doc", "/usr/share/perl", "/usr/share/man"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if buf.Len() >= limit {
				return errFull
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			hdr, err := tar.FileInfoHeader(info, "")
			if err != nil {
				return nil
			}
			hdr.Name = path
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		})
		if err == errFull {
			break
		}
		if err != nil {
			t.Fatalf("tar of %s: %v", root, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestCasyncPeer compares the chunker's boundaries with those of the real
// casync on real and synthetic data.
func TestCasyncPeer(t *testing.T) {
	casync := testutil.NeedTool(t, "casync")
	if testing.Short() {
		t.Skip("runs casync many times")
	}
	doc := docTar(t, 6<<20)
	if len(doc) < 1<<20 {
		t.Logf("only %d bytes of system files to tar", len(doc))
	}
	dir := t.TempDir()
	matched := 0
	run := func(name string, p Params, data []byte) {
		t.Helper()
		start := time.Now()
		want := casyncBoundaries(t, casync, dir, data, p)
		took := time.Since(start)
		got := Boundaries(data, p)
		if !slices.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Errorf("%v %s (%d bytes): %d chunks, casync %d; first difference at chunk %d: ours %v, casync %v",
				p, name, len(data), len(got), len(want), i, got[i:min(i+3, len(got))], want[i:min(i+3, len(want))])
			return
		}
		matched++
		t.Logf("%v %s: %d bytes, %d chunks match casync (casync took %v)", p, name, len(data), len(got), took.Round(time.Millisecond))
	}
	for _, p := range []Params{
		DefaultParams(), ParamsForAvg(16 << 10), ParamsForAvg(1 << 20),
		{64, 64, 256},          // discriminator clamped to min
		{100, 1000, 5000},      // odd sizes
		{1000, 3000, 100000},   // not casync's 1:4:16 ratio
		{4096, 65536, 1 << 20}, // wide range
		Fixed(4096),            // casync's fixed-size mode
	} {
		big := min(max(64*p.Max, 1<<20), 24<<20)
		if p.Avg < 4096 {
			big = 256 << 10 // casync writes each chunk as a file
		}
		rnd := pseudoRandom(uint64(p.Avg), big)
		run("usr-share-doc.tar", p, doc[:min(len(doc), 4*big)])
		run("random", p, rnd)
		run("zeros", p, make([]byte, 3*p.Max+17))
		run("zeros-max", p, make([]byte, p.Max))
		run("text", p, textLike(uint64(p.Max), min(big, 4<<20)))
		run("below-min", p, rnd[:p.Min-1])
		run("min", p, rnd[:p.Min])
		run("max", p, rnd[:p.Max])
		run("max+1", p, rnd[:p.Max+1])
		run("empty", p, nil)
	}
	// Averages past ~9.3 MB, where casync's discriminator formula goes
	// negative.
	p := Params{Min: 2 << 20, Avg: 10 << 20, Max: 16 << 20}
	run("random", p, pseudoRandom(99, 48<<20))
	t.Logf("%d inputs matched casync", matched)
}

// goldenCases are checked-in casync boundaries for deterministic inputs, so
// that compatibility is tested where casync is not installed.
var goldenCases = []struct {
	file  string
	p     Params
	input func() []byte
	desc  string
}{
	{"golden-random-default.txt", DefaultParams(), func() []byte { return pseudoRandom(1, 12<<20) }, "pseudoRandom(1, 12 MiB)"},
	{"golden-random-16k.txt", ParamsForAvg(16 << 10), func() []byte { return pseudoRandom(1, 12<<20) }, "pseudoRandom(1, 12 MiB)"},
	{"golden-random-1m.txt", ParamsForAvg(1 << 20), func() []byte { return pseudoRandom(1, 12<<20) }, "pseudoRandom(1, 12 MiB)"},
	{"golden-text-default.txt", DefaultParams(), func() []byte { return textLike(2, 8<<20) }, "textLike(2, 8 MiB)"},
	{"golden-random-small.txt", Params{100, 1000, 5000}, func() []byte { return pseudoRandom(3, 256<<10) }, "pseudoRandom(3, 256 KiB)"},
}

func TestGolden(t *testing.T) {
	for _, gc := range goldenCases {
		t.Run(gc.file, func(t *testing.T) {
			data := gc.input()
			sum := sha256.Sum256(data)
			path := filepath.Join("testdata", gc.file)
			if *updateGolden {
				casync := testutil.NeedTool(t, "casync")
				ends := casyncBoundaries(t, casync, t.TempDir(), data, gc.p)
				var b strings.Builder
				fmt.Fprintf(&b, "# chunk end offsets from: casync make --chunk-size=%v --digest=sha256\n", gc.p)
				fmt.Fprintf(&b, "# input: %s, sha256 %x\n", gc.desc, sum)
				for _, e := range ends {
					fmt.Fprintln(&b, e)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, wantSum := readGolden(t, path)
			if wantSum != hex.EncodeToString(sum[:]) {
				t.Fatalf("input generator changed: sha256 %x, golden file has %s", sum, wantSum)
			}
			if got := Boundaries(data, gc.p); !slices.Equal(got, want) {
				t.Fatalf("%v: %d boundaries differ from casync's %d", gc.p, len(got), len(want))
			}
			c, err := New(bytes.NewReader(data), gc.p)
			if err != nil {
				t.Fatal(err)
			}
			if got := streamBoundaries(t, c, data); !slices.Equal(got, want) {
				t.Fatalf("%v: streamed boundaries differ from casync's", gc.p)
			}
		})
	}
}

func readGolden(t *testing.T, path string) (ends []int, sum string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if _, s, ok := strings.Cut(line, "sha256 "); ok && strings.HasPrefix(line, "#") {
			sum = s
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		n, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ends = append(ends, n)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ends, sum
}
