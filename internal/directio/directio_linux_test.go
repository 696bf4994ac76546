package directio

import (
	"bytes"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// resident counts the file's pages in the page cache (mincore).
func resident(t *testing.T, p string) int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// dropCache writes the file's pages back and drops them from the page cache.
func dropCache(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// Reading a slot leaves none of it in the page cache; a plain read of the
// same file (the check that the measure works) leaves all of it.
func TestReaderLeavesNoPagesCached(t *testing.T) {
	p, want := file(t, 4*BlockSize)
	dropCache(t, p)
	if n := resident(t, p); n != 0 {
		t.Skipf("%d pages stay cached after FADV_DONTNEED here", n)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r, 64<<10)
	r.Close()
	if !bytes.Equal(got, want) {
		t.Fatal("read other bytes than the file's")
	}
	if !r.Direct() {
		noDirect(t, p)
	}
	if n := resident(t, p); n != 0 {
		t.Fatalf("%d pages of the file are in the page cache after a direct read", n)
	}
	if _, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	if n, all := resident(t, p), 4*BlockSize/os.Getpagesize(); n != all {
		t.Fatalf("a read through the page cache left %d of %d pages cached", n, all)
	}
}
