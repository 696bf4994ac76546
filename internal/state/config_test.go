package state

import (
	"errors"
	"strings"
	"testing"

	"github.com/tandem-ota/tandem/internal/config"
)

const goodConfig = `overlay = "discard"

[data-partition]
label = "data"
filesystem = "ext4"

[persist."/var/lib/app"]

[persist."/etc/machine-id"]
type = "file"

[persist."/var/log"]
shared = true
`

func TestParse(t *testing.T) {
	c, err := Parse([]File{{"/etc/tandem/state.d/10-base.toml", []byte(goodConfig)}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Data.DeviceName(), "/dev/disk/by-label/data"; got != want {
		t.Errorf("device %q, want %q", got, want)
	}
	if c.Data.Mount != DefaultMount || !c.Data.Fsck || c.Data.Grow || c.Overlay != OverlayDiscard {
		t.Errorf("defaults: %+v overlay %q", c.Data, c.Overlay)
	}
	var got []string
	for _, p := range c.Paths {
		got = append(got, p.Path+":"+p.Kind+map[bool]string{true: ":shared"}[p.Shared])
	}
	if want := "/etc/machine-id:file /var/lib/app:directory /var/log:directory:shared"; strings.Join(got, " ") != want {
		t.Errorf("paths %q, want %q", strings.Join(got, " "), want)
	}
	if c, err := Parse([]File{{"g", []byte("[data-partition]\npartition = 4\ngrow = true\n")}}); err != nil || !c.Data.Grow {
		t.Errorf("grow = true: %+v, %v", c, err)
	}
	// tandem's data directory is added, shared.
	paths := c.WithDataDir("/var/lib/tandem")
	if len(paths) != 4 || paths[2].Path != "/var/lib/tandem" || !paths[2].Shared {
		t.Errorf("WithDataDir: %+v", paths)
	}
}

// TestParseErrors: every refusal is one line naming file:line:col where
// the problem has a place, and wraps config.ErrInvalid.
func TestParseErrors(t *testing.T) {
	const f = "/etc/tandem/state.d/a.toml"
	for _, tc := range []struct{ doc, want string }{
		{"overlay = \"tmpfs\"\n", f + `:1:11: overlay: "tmpfs": want discard, persist or disabled`},
		{"colour = 1\n", f + ":1:1: colour: unknown key"},
		{"commit-when-degraded = \"yes\"\n", f + ":1:24: commit-when-degraded: expected a boolean, found string"},
		{"[data-partition]\nlabel = \"d\"\nsize = 3\n", f + ":3:1: data-partition.size: unknown key"},
		{"[data-partition]\npartition = 0\n", f + ":2:13: data-partition.partition: 0: want 1 to 128"},
		{"[data-partition]\npartition = 4\ngrow = \"yes\"\n", f + ":3:8: data-partition.grow: expected a boolean, found string"},
		{"[data-partition]\npartition = 3\nlabel = \"d\"\n", f + ":1:2: data-partition: give exactly one of partition, label and device"},
		{"[data-partition]\npartition = \"3\"\n", f + `:2:13: data-partition.partition: expected an integer, found string`},
		{"[data-partition]\ndevice = \"dev/sda4\"\n", f + `:2:10: data-partition.device: "dev/sda4" is not an absolute path`},
		{"[data-partition]\nlabel = \"d\"\nmount = \"/\"\n", f + `:3:9: data-partition.mount: the data partition cannot be mounted on /`},
		{"[data-partition]\nlabel = \"d\"\nfilesystem = \"fat\"\n", f + `:3:14: data-partition.filesystem: "fat": want ext4, btrfs, xfs or f2fs`},
		{"[data-partition]\nlabel = \"d\"\n[persist.\"var/x\"]\n", f + `:3:10: persist."var/x": "var/x" is not an absolute path`},
		{"[data-partition]\nlabel = \"d\"\n[persist.\"/var/x/\"]\n", f + `:3:10: persist."/var/x/": "/var/x/" is not clean (write "/var/x")`},
		{"[data-partition]\nlabel = \"d\"\n[persist.\"/proc/x\"]\n", f + `:3:10: persist."/proc/x": /proc is a file system init mounts itself; it cannot be persistent`},
		{"[data-partition]\nlabel = \"d\"\n[persist.\"/x\"]\ntype = \"fifo\"\n", f + `:4:8: persist."/x".type: "fifo": want directory or file`},
		{"[data-partition]\nlabel = \"d\"\n[persist.\"/x\"]\n[persist.\"/x/y\"]\n", f + `: persist "/x/y" is inside persist "/x" (declared in ` + f + `): declare one of them`},
		{"[persist.\"/x\"]\n", f + `: persistent paths are declared but no [data-partition]: declare where the state lives`},
		{"[data-partition]\nlabel = \"d\"\nmount = \"/data\"\n[persist.\"/data/x\"]\n", f + `: persist "/data/x" overlaps the data partition's mount point /data`},
		{"overlay = \n", f + ":1:11: invalid TOML: unexpected character U+000A at start of value"},
	} {
		_, err := Parse([]File{{f, []byte(tc.doc)}})
		if err == nil {
			t.Errorf("%q: accepted", tc.doc)
			continue
		}
		if !errors.Is(err, config.ErrInvalid) {
			t.Errorf("%q: %v does not wrap ErrInvalid", tc.doc, err)
		}
		if err.Error() != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.doc, err, tc.want)
		}
	}
}

// TestParseTwoFiles: a setting is made once across files; a path declared once.
func TestParseTwoFiles(t *testing.T) {
	a := File{"/s/a.toml", []byte("[data-partition]\nlabel = \"d\"\n[persist.\"/x\"]\n")}
	for _, tc := range []struct {
		b    File
		want string
	}{
		{File{"/s/b.toml", []byte("\n[data-partition]\ndevice = \"/dev/sda4\"\n")}, "/s/b.toml:2:2: data-partition: already set in /s/a.toml (set it in one file)"},
		{File{"/s/b.toml", []byte("[persist.\"/x\"]\nshared = true\n")}, "/s/b.toml:1:10: persist.\"/x\": already declared in /s/a.toml"},
	} {
		_, err := Parse([]File{a, tc.b})
		if err == nil || !strings.Contains(err.Error(), strings.SplitN(tc.want, ": ", 2)[1]) {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
	if _, err := Parse([]File{a, {"/s/b.toml", []byte("overlay = \"persist\"\n[persist.\"/y\"]\n")}}); err != nil {
		t.Errorf("two files: %v", err)
	}
	d1, d2 := File{"/s/c.toml", []byte("commit-when-degraded = true\n")}, File{"/s/d.toml", []byte("commit-when-degraded = false\n")}
	if c, err := Parse([]File{a, d1}); err != nil || !c.CommitWhenDegraded {
		t.Errorf("commit-when-degraded: %+v %v", c, err)
	}
	if _, err := Parse([]File{d1, d2}); err == nil || err.Error() != "/s/d.toml:1:24: commit-when-degraded: already set in /s/c.toml (set it in one file)" {
		t.Errorf("commit-when-degraded twice: %v", err)
	}
	big := File{"/s/big.toml", []byte(strings.Repeat("#", MaxFileSize+1))}
	if _, err := Parse([]File{big}); err == nil || !errors.Is(err, config.ErrInvalid) {
		t.Errorf("oversize file: %v", err)
	}
}

// FuzzParse: no panic, errors one line starting with the file name and
// wrapping ErrInvalid, every accepted path absolute and clean.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("[data-partition]\npartition = 4\n[persist.\"/a\"]\ntype = \"file\"\n"))
	f.Add([]byte("overlay = \"persist\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse([]File{{"/f.toml", data}})
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "/f.toml") || !errors.Is(err, config.ErrInvalid) {
				t.Fatalf("bad error %q", msg)
			}
			return
		}
		for _, p := range c.Paths {
			if checkPath(p.Path) != nil {
				t.Fatalf("accepted bad path %q", p.Path)
			}
		}
	})
}
