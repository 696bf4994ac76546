package install

import (
	"slices"
	"testing"

	"github.com/tandem-ota/tandem/internal/bundle"
)

// TestPlanRepeats checks which fetched chunk serves which later one: local
// chunks are never planned, a repeat is served by the first occurrence, and
// a chunk whose bytes do not fit the budget is fetched again.
func TestPlanRepeats(t *testing.T) {
	d := func(b byte) [32]byte { return [32]byte{b} }
	entries := []bundle.Entry{
		{Digest: d(1), StoredSize: 10}, // 0: fetched, serves 2 and 5
		{Digest: d(9), StoredSize: 10}, // 1: local
		{Digest: d(1), StoredSize: 10}, // 2: from 0
		{Digest: d(2), StoredSize: 30}, // 3: fetched; over the budget while 1 is kept: 4 is fetched again
		{Digest: d(2), StoredSize: 30}, // 4
		{Digest: d(1), StoredSize: 10}, // 5: from 0
		{Digest: d(3), StoredSize: 30}, // 6: fetched, serves 7 (1 no longer kept)
		{Digest: d(3), StoredSize: 30}, // 7: from 6
		{Digest: d(9), StoredSize: 10}, // 8: local
	}
	local := map[[32]byte]chunkLocation{d(9): {}}
	got := planRepeats(entries, local, 35)
	if want := []int{2, 0, -1, 0, 0, -1, 1, -1, 0}; !slices.Equal(got, want) {
		t.Fatalf("planRepeats = %v, want %v", got, want)
	}
	if got := planRepeats(entries, local, 0); !slices.Equal(got, make([]int, len(entries))) {
		t.Fatalf("budget 0: %v, want nothing kept", got)
	}
}
