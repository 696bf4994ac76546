package bls

import (
	"slices"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		file       string
		ok         bool
		stem       string
		left, done int
		next       string
	}{
		{"tandem-7-b.conf", true, "tandem-7-b", -1, -1, ""},
		{"tandem-7-b+3.conf", true, "tandem-7-b", 3, 0, "tandem-7-b+2-1.conf"},
		{"tandem-7-b+2-1.conf", true, "tandem-7-b", 2, 1, "tandem-7-b+1-2.conf"},
		{"tandem-7-b+1-2.conf", true, "tandem-7-b", 1, 2, "tandem-7-b+0-3.conf"},
		{"tandem-7-b+0-3.conf", true, "tandem-7-b", 0, 3, "tandem-7-b+0-4.conf"},
		{"a+b+4-0.conf", true, "a+b", 4, 0, "a+b+3-1.conf"},
		{"x+3-.conf", true, "x+3-", -1, -1, ""},         // no digits after "-": no counter
		{"x+3.CONF", true, "x+3", -1, -1, ""},           // the counter needs exactly ".conf"
		{"x+3.conf.conf", true, "x+3.conf", -1, -1, ""}, // counter in the middle
		{"x+99999999999.conf", true, "x+99999999999", -1, -1, ""},
		{"x.conf.new", false, "", 0, 0, ""},
		{".conf", false, "", 0, 0, ""},
	}
	for _, tt := range tests {
		n, ok := ParseName(tt.file)
		if ok != tt.ok {
			t.Errorf("%s: ok %v", tt.file, ok)
			continue
		}
		if !ok {
			continue
		}
		if n.Stem != tt.stem || n.Left != tt.left || n.Done != tt.done {
			t.Errorf("%s: stem %q left %d done %d; want %q %d %d", tt.file, n.Stem, n.Left, n.Done, tt.stem, tt.left, tt.done)
		}
		if n.Counted() && n.Next() != tt.next {
			t.Errorf("%s: next %s, want %s", tt.file, n.Next(), tt.next)
		}
	}
	n, _ := ParseName("tandem-7-b+1-2.conf")
	if n.Good() != "tandem-7-b.conf" || n.Bad() != "tandem-7-b+0-2.conf" || n.ID() != "tandem-7-b+1-2.conf" {
		t.Errorf("good %s bad %s id %s", n.Good(), n.Bad(), n.ID())
	}
}

func TestCompareVersions(t *testing.T) {
	// In each pair a is older than b (the UAPI version format's rules).
	pairs := []struct{ a, b string }{
		{"1~rc1", "1"}, {"1", "1-1"}, {"1-1", "1.0"}, {"1-1", "1^1"}, {"1^1", "1.1"}, {"1.1", "1a"},
		{"9", "10"}, {"10", "011a"}, {"abc", "abcd"}, {"abcd", "abd"}, {"zzz", "0"},
		{"123~rc1", "123"}, {"122.9", "123"}, {"ab", "abb"},
		{"tandem-9-b+3.conf", "tandem-10-a.conf"}, {"tandem-a.conf", "tandem-1-b.conf"},
		{"tandem-7-b.conf", "tandem-7-b+1-1.conf"},
	}
	for _, p := range pairs {
		if r := CompareVersions(p.a, p.b); r >= 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, want < 0", p.a, p.b, r)
		}
		if r := CompareVersions(p.b, p.a); r <= 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, want > 0", p.b, p.a, r)
		}
	}
	for _, eq := range [][2]string{{"11", "011"}, {"001234", "1234"}, {"1_2", "1+2"}, {"a", "a"}} {
		if r := CompareVersions(eq[0], eq[1]); r != 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, want 0", eq[0], eq[1], r)
		}
	}
}

func entry(file string, lines ...string) Entry {
	n, _ := ParseName(file)
	e, err := ParseEntry(n, []byte(strings.Join(lines, "\n")))
	if err != nil {
		panic(err)
	}
	return e
}

// TestOrder: the order systemd-boot's menu shows, first entry first.
func TestOrder(t *testing.T) {
	es := []Entry{
		entry("tandem-6-a.conf"),
		entry("tandem-7-b+0-3.conf"),
		entry("tandem-8-a+2-1.conf"),
		entry("other.conf", "sort-key debian", "version 1"),
		entry("other2.conf", "sort-key debian", "version 2"),
		entry("tandem-10-b.conf"),
	}
	slices.SortStableFunc(es, Compare)
	var got []string
	for _, e := range es {
		got = append(got, e.File)
	}
	want := []string{"other2.conf", "other.conf", "tandem-10-b.conf", "tandem-8-a+2-1.conf", "tandem-6-a.conf", "tandem-7-b+0-3.conf"}
	if !slices.Equal(got, want) {
		t.Errorf("order %v\nwant  %v", got, want)
	}
	// The counter is part of the id: among names that differ only in it,
	// the id decides (version order of the digits).
	same := []Entry{entry("x+1-2.conf"), entry("x+2-0.conf"), entry("x+2-1.conf")}
	slices.SortStableFunc(same, Compare)
	if same[0].File != "x+2-1.conf" || same[1].File != "x+2-0.conf" {
		t.Errorf("counted order %v", same)
	}
}

func TestParseEntry(t *testing.T) {
	e := entry("t.conf", "# comment", "  title   \"tandem b\"  ", "linux /b/vmlinuz\r", "initrd /b/ucode.img",
		"initrd\t/b/initrd.img", "options root=/dev/vda3", "options quiet tandem.group=b", "version", "efi /x.efi", "linux /b/vmlinuz")
	if e.Title != "tandem b" || e.Linux != "/b/vmlinuz" || e.EFI != "" || !slices.Equal(e.Initrd, []string{"/b/ucode.img", "/b/initrd.img"}) ||
		e.Options != "root=/dev/vda3 quiet tandem.group=b" || e.Version != "" || e.Program() != "/b/vmlinuz" {
		t.Errorf("%+v", e)
	}
	if _, err := ParseFields(make([]byte, MaxFile+1)); err == nil {
		t.Error("a file over the limit was read")
	}
	if e := entry("t.conf", "linux /k\x00\ninitrd /i"); e.Initrd != nil {
		t.Errorf("text after a NUL was read: %+v", e)
	}
}

func TestLoaderDefaultAndMatch(t *testing.T) {
	def, err := LoaderDefault([]byte("timeout 0\ndefault tandem-a.conf\ndefault @menu\ndefault \"Tandem-*\"\n"))
	if err != nil || def != "tandem-*" {
		t.Fatalf("default %q, %v", def, err)
	}
	for _, tt := range []struct {
		pattern, id string
		want        bool
	}{
		{"tandem-*", "tandem-7-b+3.conf", true}, {"tandem-*", "other.conf", false},
		{"tandem-a.conf", "tandem-a.conf", true}, {"tandem-?.conf", "tandem-b.conf", true}, {"[", "[", false},
	} {
		if got := Match(tt.pattern, tt.id); got != tt.want {
			t.Errorf("Match(%q, %q) = %v", tt.pattern, tt.id, got)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	f.Add("tandem-7-b+2-1.conf", []byte("title x\nlinux /k\noptions a b\n"))
	f.Add("x+3.conf", []byte("\"\n\"\" \"\n"))
	f.Fuzz(func(t *testing.T, file string, b []byte) {
		n, ok := ParseName(file)
		if !ok {
			return
		}
		if n.Counted() {
			if m, ok := ParseName(n.Next()); !ok || m.Stem != n.Stem || m.Left != max(n.Left-1, 0) {
				t.Fatalf("next of %q is %q (%+v)", file, n.Next(), m)
			}
		}
		if _, err := ParseEntry(n, b); err != nil && len(b) <= MaxFile {
			t.Fatal(err)
		}
	})
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("1.2~rc1", "1.2")
	f.Add("tandem-10-a.conf", "tandem-9-b+3.conf")
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if (ab < 0) != (ba > 0) || (ab == 0) != (ba == 0) {
			t.Fatalf("not antisymmetric: %q %q: %d %d", a, b, ab, ba)
		}
	})
}
