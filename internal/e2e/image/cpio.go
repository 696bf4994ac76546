package image

import (
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Initramfs writes a gzip-compressed newc cpio archive of the tree under dir
// to out (the format the Linux kernel unpacks as its initramfs). Entries are
// sorted, owned by root, with the tree's modes; symlinks are kept.
func Initramfs(out, dir string) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(names)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	ino := 1
	for _, p := range names {
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		var data []byte
		mode := uint32(st.Mode().Perm())
		switch {
		case st.Mode().IsDir():
			mode |= 0o040000
		case st.Mode()&fs.ModeSymlink != 0:
			mode |= 0o120000
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			data = []byte(t)
		case st.Mode().IsRegular():
			mode |= 0o100000
			if data, err = os.ReadFile(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, st.Mode().Type())
		}
		if err := cpioEntry(zw, ino, filepath.ToSlash(rel), mode, data); err != nil {
			return err
		}
		ino++
	}
	if err := cpioEntry(zw, 0, "TRAILER!!!", 0, nil); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func cpioEntry(w io.Writer, ino int, name string, mode uint32, data []byte) error {
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	var b strings.Builder
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	for (b.Len())%4 != 0 {
		b.WriteByte(0)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if pad := (4 - len(data)%4) % 4; pad > 0 {
		_, err := w.Write(make([]byte, pad))
		return err
	}
	return nil
}
