package autoboot

import (
	"errors"
	"strings"
	"testing"
)

const canonical = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"

func TestNew(t *testing.T) {
	f := New(2, 3)
	if got := string(f.Bytes()); got != canonical {
		t.Fatalf("New(2, 3) =\n%s\nwant\n%s", got, canonical)
	}
	all, try, err := f.Partitions()
	if err != nil || all != 2 || try != 3 {
		t.Errorf("Partitions = %d, %d, %v; want 2, 3, nil", all, try, err)
	}
	p, err := Parse(f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Bytes()) != canonical {
		t.Errorf("Parse(New().Bytes()).Bytes() = %q", p.Bytes())
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		out  string // Bytes(); "" means same as in
		get  [][3]string
		err  error
	}{
		{"canonical", canonical, "", [][3]string{{"all", "boot_partition", "2"}, {"tryboot", "boot_partition", "3"}, {"all", "tryboot_a_b", "1"}}, nil},
		{"empty", "", "", nil, nil},
		{"comments and blanks kept", "# A/B\n\n[all]\n  # indented\nboot_partition=2\n\t\n", "", [][3]string{{"all", "boot_partition", "2"}}, nil},
		{"no final newline", "[all]\nboot_partition=2", "[all]\nboot_partition=2\n", [][3]string{{"all", "boot_partition", "2"}}, nil},
		{"unknown filters verbatim", "[pi4]\nx=1\n[gpio4=1]\nboot_partition=5\n[none]\n", "", [][3]string{{"pi4", "x", "1"}, {"gpio4=1", "boot_partition", "5"}}, nil},
		{"preamble", "boot_partition=1\n[all]\n", "", [][3]string{{"", "boot_partition", "1"}}, nil},
		{"empty value", "[all]\nk=\n", "", [][3]string{{"all", "k", ""}}, nil},
		{"value verbatim", "[all]\nk= a=b # c\n", "", [][3]string{{"all", "k", " a=b # c"}}, nil},
		{"max size", "#" + strings.Repeat("x", MaxSize-2) + "\n", "", nil, nil},

		{"too large", "#" + strings.Repeat("x", MaxSize) + "\n", "", nil, ErrTooLarge},
		{"too large with newline", "#" + strings.Repeat("x", MaxSize-1), "", nil, ErrTooLarge},
		{"crlf", "[all]\r\nboot_partition=2\r\n", "", nil, ErrSyntax},
		{"NUL", "[all]\nk=\x00\n", "", nil, ErrSyntax},
		{"no equals", "[all]\nboot_partition\n", "", nil, ErrSyntax},
		{"space before equals", "[all]\nboot_partition =2\n", "", nil, ErrSyntax},
		{"indented setting", "[all]\n boot_partition=2\n", "", nil, ErrSyntax},
		{"empty key", "[all]\n=2\n", "", nil, ErrSyntax},
		{"unterminated header", "[all\n", "", nil, ErrSyntax},
		{"trailing text after header", "[all] x\n", "", nil, ErrSyntax},
		{"empty header", "[]\n", "", nil, ErrSyntax},
		{"nested brackets", "[a[b]]\n", "", nil, ErrSyntax},
		{"duplicate section", "[all]\n[tryboot]\n[all]\n", "", nil, ErrSyntax},
		{"duplicate key", "[all]\nk=1\nk=2\n", "", nil, ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("Parse error = %v, want %v", err, tt.err)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "autoboot: ") {
					t.Errorf("error %q lacks package prefix", err)
				}
				return
			}
			want := tt.out
			if want == "" {
				want = tt.in
			}
			if got := string(f.Bytes()); got != want {
				t.Errorf("Bytes =\n%q\nwant\n%q", got, want)
			}
			for _, g := range tt.get {
				if v, ok := f.Get(g[0], g[1]); !ok || v != g[2] {
					t.Errorf("Get(%q, %q) = %q, %v; want %q", g[0], g[1], v, ok, g[2])
				}
			}
			if _, ok := f.Get("all", "missing"); ok {
				t.Error("Get of a missing key reported a value")
			}
		})
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name                string
		in                  string
		section, key, value string
		want                string
		err                 error
	}{
		{"replace in place", canonical, "all", "boot_partition", "3",
			"[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=3\n", nil},
		{"add key after last setting", "[all]\nk=1\n# next\n[tryboot]\n", "all", "boot_partition", "2",
			"[all]\nk=1\nboot_partition=2\n# next\n[tryboot]\n", nil},
		{"add key to empty section", "[tryboot]\n# c\n", "tryboot", "boot_partition", "3",
			"[tryboot]\nboot_partition=3\n# c\n", nil},
		{"add section", "[all]\nboot_partition=2\n", "tryboot", "boot_partition", "3",
			"[all]\nboot_partition=2\n[tryboot]\nboot_partition=3\n", nil},
		{"preamble", "[all]\n", "", "k", "v", "k=v\n[all]\n", nil},
		{"keeps other lines verbatim", "# keep me\n[all]\nboot_partition=2 \n[pi4]\n", "all", "tryboot_a_b", "1",
			"# keep me\n[all]\nboot_partition=2 \ntryboot_a_b=1\n[pi4]\n", nil},

		{"bad key", canonical, "all", "boot partition", "2", canonical, ErrInvalid},
		{"bad section", canonical, "a]l", "k", "2", canonical, ErrInvalid},
		{"newline in value", canonical, "all", "k", "2\n[x]", canonical, ErrInvalid},
		{"too large", canonical, "all", "k", strings.Repeat("x", MaxSize), canonical, ErrTooLarge},
		{"too large new section", "#" + strings.Repeat("x", MaxSize-10) + "\n", "tryboot", "k", "v",
			"#" + strings.Repeat("x", MaxSize-10) + "\n", ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Set(tt.section, tt.key, tt.value); !errors.Is(err, tt.err) {
				t.Fatalf("Set error = %v, want %v", err, tt.err)
			}
			if got := string(f.Bytes()); got != tt.want {
				t.Errorf("Bytes =\n%q\nwant\n%q", got, tt.want)
			}
			if tt.err == nil {
				if v, ok := f.Get(tt.section, tt.key); !ok || v != tt.value {
					t.Errorf("Get after Set = %q, %v", v, ok)
				}
			}
		})
	}
}

func TestZeroFile(t *testing.T) {
	var f File
	if err := f.Set("all", "boot_partition", "2"); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("", "top", "1"); err != nil {
		t.Fatal(err)
	}
	if got, want := string(f.Bytes()), "top=1\n[all]\nboot_partition=2\n"; got != want {
		t.Errorf("Bytes = %q, want %q", got, want)
	}
}

func TestPartitions(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		all, try int
		err      error
	}{
		{"canonical", canonical, 2, 3, nil},
		{"no tryboot section", "[all]\nboot_partition=63\n", 63, 0, nil},
		{"tryboot without key", "[all]\nboot_partition=1\n[tryboot]\n", 1, 0, nil},
		{"missing all", "[tryboot]\nboot_partition=3\n", 0, 0, ErrPartition},
		{"only in preamble", "boot_partition=2\n", 0, 0, ErrPartition},
		{"zero", "[all]\nboot_partition=0\n", 0, 0, ErrPartition},
		{"64", "[all]\nboot_partition=64\n", 0, 0, ErrPartition},
		{"leading zero", "[all]\nboot_partition=02\n", 0, 0, ErrPartition},
		{"plus", "[all]\nboot_partition=+2\n", 0, 0, ErrPartition},
		{"not a number", "[all]\nboot_partition=two\n", 0, 0, ErrPartition},
		{"trailing space", "[all]\nboot_partition=2 \n", 0, 0, ErrPartition},
		{"bad tryboot", "[all]\nboot_partition=2\n[tryboot]\nboot_partition=x\n", 0, 0, ErrPartition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			all, try, err := f.Partitions()
			if !errors.Is(err, tt.err) || all != tt.all || try != tt.try {
				t.Errorf("Partitions = %d, %d, %v; want %d, %d, %v", all, try, err, tt.all, tt.try, tt.err)
			}
		})
	}
}
