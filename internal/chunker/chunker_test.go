package chunker

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"slices"
	"testing"
	"testing/iotest"
)

func TestDiscriminator(t *testing.T) {
	// Values of casync's CA_CHUNKER_DISCRIMINATOR_FROM_AVG, computed by the
	// same C expression compiled with gcc on amd64, before clamping.
	for _, tc := range []struct{ avg, d int }{
		{64, 48}, {256, 192}, {1000, 750}, {3000, 2252}, {4096, 3075}, {12345, 9277},
		{16384, 12318}, {65536, 49535}, {262144, 202440}, {1048576, 886711},
		{4194304, 5721670},
	} {
		p := Params{Min: 1, Avg: tc.avg, Max: MaxSize}
		if got := Discriminator(p); got != tc.d {
			t.Errorf("Discriminator(avg %d) = %d, want %d", tc.avg, got, tc.d)
		}
	}
	// Clamping to [min, max], as ca_chunker_set_size does.
	if got := Discriminator(Params{Min: 64, Avg: 64, Max: 256}); got != 64 {
		t.Errorf("avg 64 min 64: d = %d, want 64 (clamped to min)", got)
	}
	if got := Discriminator(Params{Min: 1 << 20, Avg: 4 << 20, Max: 5 << 20}); got != 5<<20 {
		t.Errorf("avg 4 MiB max 5 MiB: d = %d, want %d (clamped to max)", got, 5<<20)
	}
	// Past ~9.3 MB casync's quotient is negative; on amd64 that ends up as max.
	if got := Discriminator(Params{Min: 4 << 20, Avg: 10 << 20, Max: 16 << 20}); got != 16<<20 {
		t.Errorf("avg 10 MiB: d = %d, want max %d", got, 16<<20)
	}
}

func TestCutTestMatchesModulo(t *testing.T) {
	hs := []uint32{0, 1, 2, 1<<31 - 1, 1 << 31, 1<<32 - 2, 1<<32 - 1}
	rnd := pseudoRandom(7, 4*20000)
	for i := 0; i < len(rnd); i += 4 {
		hs = append(hs, uint32(rnd[i])|uint32(rnd[i+1])<<8|uint32(rnd[i+2])<<16|uint32(rnd[i+3])<<24)
	}
	for _, d := range []int{64, 65, 100, 192, 750, 3075, 9277, 12318, 49535, 65536, 202440, 886711, 5721670, MaxSize - 1, MaxSize} {
		s := newSplitter(Params{Min: 64, Avg: 64, Max: MaxSize})
		m := ^uint64(0)/uint64(d) + 1
		s.m, s.thresh = m, -m
		check := func(h uint32) {
			want := h%uint32(d) == uint32(d)-1
			if got := uint64(h)*s.m >= s.thresh; got != want {
				t.Fatalf("d=%d h=%d: cut test %v, modulo says %v", d, h, got, want)
			}
		}
		for _, h := range hs {
			check(h)
		}
		// Around every multiple of d near the ends of the range.
		for k := uint64(1); k < 50; k++ {
			for _, base := range []uint64{k * uint64(d), (1<<32)/uint64(d)*uint64(d) - k*uint64(d)} {
				for delta := -2; delta <= 2; delta++ {
					if v := int64(base) + int64(delta); v >= 0 && v < 1<<32 {
						check(uint32(v))
					}
				}
			}
		}
	}
}

func TestRollingHashMatchesWindowHash(t *testing.T) {
	data := pseudoRandom(3, 4096)
	full := func(w []byte) uint32 {
		var h uint32
		for j, b := range w {
			h ^= bits.RotateLeft32(buzTable[b], len(w)-1-j)
		}
		return h
	}
	h := full(data[:WindowSize])
	for i := WindowSize; i < len(data); i++ {
		h = bits.RotateLeft32(h, 1) ^ buzTableRot[data[i-WindowSize]] ^ buzTable[data[i]]
		if want := full(data[i+1-WindowSize : i+1]); h != want {
			t.Fatalf("rolled hash at %d = %#x, want %#x", i, h, want)
		}
	}
}

func TestParams(t *testing.T) {
	if got, want := DefaultParams(), (Params{16 << 10, 64 << 10, 256 << 10}); got != want {
		t.Errorf("DefaultParams() = %v, want %v", got, want)
	}
	if got, want := ParamsForAvg(1<<20), (Params{256 << 10, 1 << 20, 4 << 20}); got != want {
		t.Errorf("ParamsForAvg(1 MiB) = %v, want %v", got, want)
	}
	if got := DefaultParams().String(); got != "16384:65536:262144" {
		t.Errorf("String() = %q", got)
	}
	for _, p := range []Params{DefaultParams(), ParamsForAvg(256), ParamsForAvg(4 << 20), Fixed(64), Fixed(MaxSize), {64, 64, 64}, {100, 1000, 100000}} {
		if err := p.Validate(); err != nil {
			t.Errorf("%v: %v", p, err)
		}
		if _, err := New(bytes.NewReader(nil), p); err != nil {
			t.Errorf("New(%v): %v", p, err)
		}
	}
	for _, p := range []Params{{}, ParamsForAvg(128), {48, 100, 200}, {63, 64, 65}, {200, 100, 300}, {100, 300, 200}, ParamsForAvg(8 << 20), Fixed(MaxSize + 1)} {
		if err := p.Validate(); err == nil {
			t.Errorf("%v: no error", p)
		}
		if _, err := New(bytes.NewReader(nil), p); err == nil {
			t.Errorf("New(%v): no error", p)
		}
	}
	for _, size := range []int{0, -1, MaxSize + 1} {
		if _, err := NewFixed(bytes.NewReader(nil), size); err == nil {
			t.Errorf("NewFixed(%d): no error", size)
		}
	}
}

// testInputs returns named inputs of various shapes for p.
func testInputs(p Params) map[string][]byte {
	rnd := pseudoRandom(11, 3*p.Max+12345)
	return map[string][]byte{
		"empty":        nil,
		"one":          {42},
		"window":       rnd[:WindowSize],
		"below-min":    rnd[:p.Min-1],
		"min":          rnd[:p.Min],
		"min+1":        rnd[:p.Min+1],
		"max":          rnd[:p.Max],
		"max+1":        rnd[:p.Max+1],
		"zeros":        make([]byte, 3*p.Max+17),
		"random":       rnd,
		"text":         textLike(5, 2*p.Max+999),
		"random-zeros": append(slices.Clone(rnd[:p.Max]), make([]byte, 2*p.Max)...),
	}
}

func TestBoundariesMatchReference(t *testing.T) {
	for _, p := range []Params{DefaultParams(), ParamsForAvg(4096), {64, 64, 256}, {64, 100, 1000}, {100, 1000, 5000}, {1000, 3000, 100000}, {4000, 4000, 4100}, Fixed(4096)} {
		for name, data := range testInputs(p) {
			got := Boundaries(data, p)
			want := refBoundaries(data, p)
			if !slices.Equal(got, want) {
				t.Errorf("%v %s: Boundaries differ from the reference\n got %v\nwant %v", p, name, got, want)
				continue
			}
			checkSizes(t, got, len(data), p)
		}
	}
}

func TestStreaming(t *testing.T) {
	p := ParamsForAvg(1024)
	readers := map[string]func([]byte) io.Reader{
		"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"one-byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"half":     func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) },
		"data-err": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
		"odd":      func(b []byte) io.Reader { return &chunkReader{data: b, sizes: []int{7, 0, 1, 4093, 3, 0, 0, 777}} },
	}
	for name, data := range testInputs(p) {
		want := Boundaries(data, p)
		wantFixed := fixedBoundaries(len(data), 1000)
		for rname, mk := range readers {
			c, err := New(mk(data), p)
			if err != nil {
				t.Fatal(err)
			}
			if got := streamBoundaries(t, c, data); !slices.Equal(got, want) {
				t.Errorf("%s via %s reader: boundaries %v, want %v", name, rname, got, want)
			}
			f, err := NewFixed(mk(data), 1000)
			if err != nil {
				t.Fatal(err)
			}
			if got := streamBoundaries(t, f, data); !slices.Equal(got, wantFixed) {
				t.Errorf("fixed %s via %s reader: boundaries %v, want %v", name, rname, got, wantFixed)
			}
		}
	}
}

func TestStreamingLarge(t *testing.T) {
	// Many buffer refills with default parameters.
	data := append(pseudoRandom(21, 5<<20), textLike(22, 3<<20)...)
	p := DefaultParams()
	want := Boundaries(data, p)
	if ref := refBoundaries(data, p); !slices.Equal(want, ref) {
		t.Fatalf("Boundaries differ from the reference")
	}
	checkSizes(t, want, len(data), p)
	c, err := New(&chunkReader{data: data, sizes: []int{1, 100000, 65536, 13, 300001}}, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := streamBoundaries(t, c, data); !slices.Equal(got, want) {
		t.Fatalf("streamed boundaries differ: %d chunks, want %d", len(got), len(want))
	}
}

func TestFixed(t *testing.T) {
	for _, size := range []int{1, 7, 64, 4096, 65536} {
		for _, n := range []int{0, 1, size - 1, size, size + 1, 3 * size, 3*size + 5} {
			if n < 0 {
				continue
			}
			data := pseudoRandom(uint64(n), n)
			want := fixedBoundaries(n, size)
			c, err := NewFixed(iotest.HalfReader(bytes.NewReader(data)), size)
			if err != nil {
				t.Fatal(err)
			}
			if got := streamBoundaries(t, c, data); !slices.Equal(got, want) {
				t.Errorf("NewFixed(%d) on %d bytes: %v, want %v", size, n, got, want)
			}
			if size >= MinSize {
				if got := Boundaries(data, Fixed(size)); !slices.Equal(got, want) {
					t.Errorf("Boundaries(Fixed(%d)) on %d bytes: %v, want %v", size, n, got, want)
				}
				c, err := New(bytes.NewReader(data), Fixed(size))
				if err != nil {
					t.Fatal(err)
				}
				if got := streamBoundaries(t, c, data); !slices.Equal(got, want) {
					t.Errorf("New(Fixed(%d)) on %d bytes: %v, want %v", size, n, got, want)
				}
			}
		}
	}
}

func TestEmptyInput(t *testing.T) {
	c, err := New(bytes.NewReader(nil), DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if chunk, err := c.Next(); chunk != nil || !errors.Is(err, io.EOF) {
			t.Fatalf("Next() = %d bytes, %v; want nothing and io.EOF", len(chunk), err)
		}
	}
	if b := Boundaries(nil, DefaultParams()); len(b) != 0 {
		t.Fatalf("Boundaries(nil) = %v", b)
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	data := pseudoRandom(1, 10000)
	r := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom))
	c, err := New(r, ParamsForAvg(1024))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for {
		chunk, err := c.Next()
		if err != nil {
			if !errors.Is(err, boom) {
				t.Fatalf("error %v, want %v", err, boom)
			}
			break
		}
		n += len(chunk)
	}
	if n >= len(data) {
		t.Fatalf("all %d bytes handed out despite the read error", n)
	}
	if _, err := c.Next(); !errors.Is(err, boom) {
		t.Fatalf("error not sticky: %v", err)
	}

	// A reader that never makes progress.
	c, err = NewFixed(&chunkReader{data: []byte{1}, sizes: []int{0}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("error %v, want io.ErrNoProgress", err)
	}
}

func TestChunkCapacityIsLimited(t *testing.T) {
	data := pseudoRandom(2, 20000)
	c, err := New(bytes.NewReader(data), ParamsForAvg(1024))
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.Next()
	if err != nil {
		t.Fatal(err)
	}
	if cap(first) != len(first) {
		t.Fatalf("chunk has cap %d > len %d: appending would overwrite the next chunk", cap(first), len(first))
	}
}

func TestNoAllocsInSteadyState(t *testing.T) {
	data := pseudoRandom(9, 4<<20)
	r := bytes.NewReader(data)
	c, err := New(r, ParamsForAvg(4096))
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(3, func() {
		r.Reset(data)
		c.Reset(r)
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations while chunking", allocs)
	}
}

func FuzzChunker(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint16(0), uint16(0), uint8(1))
	f.Add(pseudoRandom(1, 5000), uint16(36), uint16(200), uint16(800), uint8(7))
	f.Add(make([]byte, 3000), uint16(0), uint16(0), uint16(0), uint8(3))
	f.Add(textLike(2, 6000), uint16(100), uint16(100), uint16(1000), uint8(255))
	f.Fuzz(func(t *testing.T, data []byte, a, b, c uint16, step uint8) {
		p := Params{Min: MinSize + int(a%512)}
		p.Avg = p.Min + int(b%1024)
		p.Max = p.Avg + int(c%4096)
		want := Boundaries(data, p)
		checkSizes(t, want, len(data), p)
		if ref := refBoundaries(data, p); !slices.Equal(want, ref) {
			t.Fatalf("%v: Boundaries %v, reference %v", p, want, ref)
		}
		sizes := []int{int(step)%97 + 1, 1, int(step) + 1}
		ch, err := New(&chunkReader{data: data, sizes: sizes}, p)
		if err != nil {
			t.Fatal(err)
		}
		if got := streamBoundaries(t, ch, data); !slices.Equal(got, want) {
			t.Fatalf("%v, reads of %v: streamed %v, want %v", p, sizes, got, want)
		}
		fsize := int(step) + 1
		fc, err := NewFixed(&chunkReader{data: data, sizes: sizes}, fsize)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := streamBoundaries(t, fc, data), fixedBoundaries(len(data), fsize); !slices.Equal(got, want) {
			t.Fatalf("fixed %d: streamed %v, want %v", fsize, got, want)
		}
	})
}
