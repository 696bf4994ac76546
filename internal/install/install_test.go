package install_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/tandem-ota/tandem/internal/bundle"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
	"github.com/tandem-ota/tandem/internal/signature"
	"github.com/tandem-ota/tandem/internal/sim"
)

// ---- fixtures shared by all tests (built once in TestMain) ----

const (
	compatible = "tandem-sim" // sim.New's default
	chunkAvg   = 16 << 10     // small chunks: a few hundred KiB make many of them
	slotSize   = 1 << 20
	handler    = "/usr/libexec/tandem-test/recv" // execute handler on every test device
	efivarsDir = "/sys/firmware/efi/efivars"
)

type signFunc func(bundle.Hash) ([]signature.Signature, error)

var fx struct {
	tmp          string        // removed after the tests
	key          crypto.Signer // the devices' trusted release key
	pubFile      string        // its public key (installed with sim.Options.Trust)
	otherKey     crypto.Signer // a key no device trusts
	sign, signBy signFunc      // by key, by otherKey
	docs         []tarEntry    // files of /usr/share/doc (or generated text)
	imgV1, imgV2 []byte        // slot images: tars of docs, and of a changed copy
	tree         []tarEntry    // a file tree: docs plus dirs, a symlink, a hard link, an executable
	sysV1, sysV2 []byte        // signed bundles: system = imgV1 (1.0.0), imgV2 (2.0.0)
	hashV1       bundle.Hash
	full         []byte // signed bundle 1.1.0: system = imgV2, app = tree
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if fx.tmp, err = os.MkdirTemp("", "tandem-install-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(fx.tmp)
	if err := setupFixtures(); err != nil {
		fmt.Fprintln(os.Stderr, "fixtures:", err)
		return 1
	}
	return m.Run()
}

func setupFixtures() error {
	priv, pub, err := signature.GenerateKey()
	if err != nil {
		return err
	}
	if fx.key, err = signature.ParsePrivateKey(priv); err != nil {
		return err
	}
	fx.pubFile = filepath.Join(fx.tmp, "release.pub")
	if err := os.WriteFile(fx.pubFile, pub, 0o644); err != nil {
		return err
	}
	priv2, _, err := signature.GenerateKey()
	if err != nil {
		return err
	}
	if fx.otherKey, err = signature.ParsePrivateKey(priv2); err != nil {
		return err
	}
	fx.sign, fx.signBy = signWith(fx.key, nil), signWith(fx.otherKey, nil)

	fx.docs = docEntries(320 << 10)
	fx.imgV1 = tarBytes(fx.docs)
	fx.imgV2 = tarBytes(changed(fx.docs))
	fx.tree = append(slices.Clone(fx.docs),
		tarEntry{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "bin/run.sh", typ: tar.TypeReg, mode: 0o755, data: []byte("#!/bin/sh\necho app\n")},
		tarEntry{name: "etc/", typ: tar.TypeDir, mode: 0o750},
		tarEntry{name: "etc/app.conf", typ: tar.TypeReg, mode: 0o640, data: []byte("level = 3\n")},
		tarEntry{name: "etc/current.conf", typ: tar.TypeSymlink, link: "app.conf"},
		tarEntry{name: "bin/conf", typ: tar.TypeSymlink, link: "../etc/app.conf"},
		tarEntry{name: "bin/start", typ: tar.TypeLink, link: "bin/run.sh"},
	)
	if fx.sysV1, fx.hashV1, err = buildBundle(spec{version: "1.0.0", payloads: []pl{sysPayload(fx.imgV1)}}); err != nil {
		return err
	}
	if fx.sysV2, _, err = buildBundle(spec{version: "2.0.0", payloads: []pl{sysPayload(fx.imgV2)}}); err != nil {
		return err
	}
	fx.full, _, err = buildBundle(spec{version: "1.1.0", payloads: []pl{sysPayload(fx.imgV2), treePayload(tarBytes(fx.tree))}})
	return err
}

func signWith(key crypto.Signer, chain [][]byte) signFunc {
	return func(h bundle.Hash) ([]signature.Signature, error) {
		s, err := signature.Sign(key, chain, h)
		return []signature.Signature{s}, err
	}
}

// ---- realistic data: tars of /usr/share/doc ----

type tarEntry struct {
	name string
	typ  byte
	mode int64
	link string
	data []byte
}

// docEntries collects up to about limit bytes of files under /usr/share/doc
// (directories and regular files, in walk order); where there are too few it
// makes up text.
func docEntries(limit int) []tarEntry {
	var es []tarEntry
	total := 0
	dirs := map[string]bool{}
	_ = filepath.WalkDir("/usr/share/doc", func(p string, d fs.DirEntry, err error) error {
		if err != nil || total >= limit {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil || fi.Size() == 0 || fi.Size() > 48<<10 {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		rel := "doc/" + strings.TrimPrefix(filepath.ToSlash(p), "/usr/share/doc/")
		for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
			if !dirs[dir] {
				dirs[dir] = true
				es = append(es, tarEntry{name: dir + "/", typ: tar.TypeDir, mode: 0o755})
			}
		}
		es = append(es, tarEntry{name: rel, typ: tar.TypeReg, mode: 0o644, data: b})
		total += len(b)
		return nil
	})
	if total < 64<<10 {
		es = nil
		r := mrand.New(mrand.NewPCG(1, 2))
		words := strings.Fields("the update is written to the inactive copy of the system booted once on trial and kept only when it commits")
		es = append(es, tarEntry{name: "doc/", typ: tar.TypeDir, mode: 0o755})
		for i := 0; i < 64; i++ {
			var b bytes.Buffer
			for b.Len() < 5000 {
				b.WriteString(words[r.IntN(len(words))])
				b.WriteByte(" \n"[r.IntN(2)])
			}
			es = append(es, tarEntry{name: fmt.Sprintf("doc/file%02d.txt", i), typ: tar.TypeReg, mode: 0o644, data: b.Bytes()})
		}
	}
	// Parents come before children when sorted by name (dirs end in "/").
	sort.SliceStable(es, func(i, j int) bool { return es[i].name < es[j].name })
	return es
}

// changed is a second version: one file edited in the middle, one removed,
// one added.
func changed(es []tarEntry) []tarEntry {
	out := make([]tarEntry, 0, len(es)+1)
	files := 0
	for _, e := range es {
		if e.typ == tar.TypeReg {
			files++
			switch {
			case files == 3:
				d := slices.Clone(e.data)
				copy(d[len(d)/2:], "tandem 2.0.0 changed this line\n")
				e.data = d
			case files == 7:
				continue
			}
		}
		out = append(out, e)
	}
	return append(out, tarEntry{name: "doc/NEWS-2.0.0", typ: tar.TypeReg, mode: 0o644,
		data: bytes.Repeat([]byte("version 2.0.0: faster updates\n"), 300)})
}

func tarBytes(es []tarEntry) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mtime := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Size: int64(len(e.data)),
			ModTime: mtime, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o777
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			panic(err)
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// ---- bundles ----

type pl struct {
	name, target string
	kind         bundle.Kind
	handler      []string
	data         []byte
}

func sysPayload(img []byte) pl {
	return pl{name: "system", target: "system", kind: bundle.KindSlot, data: img}
}

func treePayload(tarball []byte) pl {
	return pl{name: "app", target: "app", kind: bundle.KindTree, data: tarball}
}

type spec struct {
	compatible, version, minVersion string
	unsigned                        bool
	sign                            signFunc // nil: fx.sign
	payloads                        []pl
	format                          uint16 // bundle format version; 0: the writer's
}

func buildBundle(s spec) ([]byte, bundle.Hash, error) {
	meta := bundle.Header{Compatible: compatible, Version: "1.0.0", Name: "tandem test bundle",
		MinVersion: s.minVersion, Created: time.Now().Unix(), Format: s.format}
	if s.compatible != "" {
		meta.Compatible = s.compatible
	}
	if s.version != "" {
		meta.Version = s.version
	}
	var specs []bundle.PayloadSpec
	for _, p := range s.payloads {
		specs = append(specs, bundle.PayloadSpec{Name: p.name, Kind: p.kind, Target: p.target, Handler: p.handler,
			Chunker: bundle.ChunkerBuzhash, ChunkSize: chunkAvg, Source: bytes.NewReader(p.data)})
	}
	opts := bundle.Options{Level: bundle.LevelDefault, Workers: 2, TempDir: fx.tmp, Sign: s.sign}
	if opts.Sign == nil {
		opts.Sign = fx.sign
	}
	if s.unsigned {
		opts.Sign = nil
	}
	var b bytes.Buffer
	h, err := bundle.Write(&b, meta, specs, opts)
	return b.Bytes(), h, err
}

func mkBundle(t testing.TB, s spec) ([]byte, bundle.Hash) {
	t.Helper()
	b, h, err := buildBundle(s)
	if err != nil {
		t.Fatalf("bundle: %v", err)
	}
	return b, h
}

// sections is a bundle taken apart. stored holds each payload's stored
// table (format 3; empty in format 2), which join makes again.
type sections struct {
	h                    *bundle.Header
	hb, sb               []byte
	tables, stored, data [][]byte
}

func split(t testing.TB, b []byte) *sections {
	t.Helper()
	r, err := bundle.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("split: %v", err)
	}
	s := &sections{h: r.Header, hb: r.HeaderBytes, sb: r.SigBytes}
	off := len(s.hb) + len(s.sb)
	for _, p := range r.Header.Payloads {
		n := int(p.TableSize())
		s.tables = append(s.tables, slices.Clone(b[off:off+n]))
		off += n
		n = int(r.Header.StoredTableSize(&p))
		s.stored = append(s.stored, slices.Clone(b[off:off+n]))
		off += n
		s.data = append(s.data, slices.Clone(b[off:off+int(p.StoredSize)]))
		off += int(p.StoredSize)
	}
	if off != len(b) {
		t.Fatalf("split: %d bytes, sections end at %d", len(b), off)
	}
	return s
}

// tableEnd and dataEnd are the offsets where payload i's tables (chunk
// table and, in format 3, stored table) and data end.
func (s *sections) tableEnd(i int) int { return s.dataEnd(i-1) + len(s.tables[i]) + len(s.stored[i]) }

func (s *sections) dataEnd(i int) int {
	off := len(s.hb) + len(s.sb)
	for j := 0; j <= i; j++ {
		off += len(s.tables[j]) + len(s.stored[j]) + len(s.data[j])
	}
	return off
}

// join marshals the (possibly changed) header again and signs it with sign.
func (s *sections) join(t testing.TB, sign signFunc) []byte {
	t.Helper()
	s.stored = make([][]byte, len(s.tables))
	if s.h.HasStoredTable() {
		// The stored table of each payload, from its (possibly changed)
		// chunk table and data.
		for i := range s.tables {
			off := 0
			for raw := s.tables[i]; len(raw) >= bundle.EntrySize; raw = raw[bundle.EntrySize:] {
				n := int(bundle.UnmarshalEntry(raw).StoredSize)
				sd := sha256.Sum256(s.data[i][off : off+n])
				s.stored[i] = append(s.stored[i], sd[:]...)
				off += n
			}
			s.h.Payloads[i].StoredTableDigest = bundle.TableDigest(s.stored[i])
		}
	}
	hb, err := bundle.MarshalHeader(s.h)
	if err != nil {
		t.Fatalf("marshal header: %v", err)
	}
	sigs, err := sign(sha256.Sum256(hb))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := bundle.MarshalSignatures(sigs)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Concat(hb, sb)
	for i := range s.tables {
		out = slices.Concat(out, s.tables[i], s.stored[i], s.data[i])
	}
	return out
}

func parseTable(t testing.TB, s *sections, i int) []bundle.Entry {
	t.Helper()
	es, err := bundle.ParseTable(s.tables[i], &s.h.Payloads[i])
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func marshalTable(es []bundle.Entry) []byte {
	var b []byte
	for i := range es {
		b = bundle.MarshalEntry(b, &es[i])
	}
	return b
}

func flip(b []byte, off int) []byte {
	c := slices.Clone(b)
	c[off] ^= 0x20
	return c
}

// ---- certificates ----

func newCA(t testing.TB, cn string) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-5 * 365 * 24 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func newLeaf(t testing.TB, ca *x509.Certificate, caKey crypto.Signer, notBefore, notAfter time.Time) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "Release Signer"},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// certFile writes c as PEM into a file for Options.Trust.
func certFile(t testing.TB, c *x509.Certificate) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---- simulated devices ----

type devOpts struct {
	flow     string // default grub
	slotSize int64  // default slotSize
	factory  string // factory-version of group a ("" = 0.1.0, "-" = unknown)
	app      bool   // a directory slot per group, alias app
	noTrust  bool   // no trusted key on the device
}

func newDevice(t testing.TB, o devOpts) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dev")
	so := sim.Options{BootFlow: o.flow, SlotSize: o.slotSize, FactoryVersion: o.factory, Trust: []string{fx.pubFile}}
	switch o.factory {
	case "":
		so.FactoryVersion = "0.1.0" // known: an unknown running version refuses every install
	case "-":
		so.FactoryVersion = ""
	}
	if so.BootFlow == "" {
		so.BootFlow = config.FlowGrub
	}
	if so.SlotSize == 0 {
		so.SlotSize = slotSize
	}
	if o.noTrust {
		so.Trust = nil
	}
	if err := sim.New(dir, so); err != nil {
		t.Fatalf("sim new: %v", err)
	}
	if o.app {
		p := filepath.Join(dir, "etc/tandem/system.toml")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, g := range []string{"a", "b"} {
			old := fmt.Sprintf("slots = { system = \"system-%s\" }", g)
			if !strings.Contains(s, old) {
				t.Fatalf("sim config has no %q:\n%s", old, s)
			}
			s = strings.Replace(s, old, fmt.Sprintf("slots = { system = \"system-%s\", app = \"app-%s\" }", g, g), 1)
			s += fmt.Sprintf("\n[slots.app-%s]\ntype = \"directory\"\npath = \"/apps/%s\"\n", g, g)
		}
		writeFile(t, filepath.Join(dir, p[len(dir):]), s, 0o644)
		// The running group's app, and something old in the spare one.
		writeFile(t, filepath.Join(dir, "apps/a/bin/app"), "#!/bin/sh\necho running app\n", 0o755)
		writeFile(t, filepath.Join(dir, "apps/b/stale.txt"), "from an older install\n", 0o644)
	}
	writeFile(t, filepath.Join(dir, handler), `#!/bin/sh
set -e
mkdir -p "$TANDEM_ROOT/recv"
printf '%s\n' "$@" > "$TANDEM_ROOT/recv/$TANDEM_PAYLOAD.args"
cat > "$TANDEM_ROOT/recv/$TANDEM_PAYLOAD"
`, 0o755)
	return dir
}

func writeFile(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func open(t testing.TB, dir string) *device.Device {
	t.Helper()
	d, err := device.Open(device.Options{Root: dir})
	if err != nil {
		t.Fatalf("open device: %v", err)
	}
	return d
}

func status(t testing.TB, dir string) device.Status {
	t.Helper()
	st, err := open(t, dir).Status()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func state(t testing.TB, dir string) *device.State {
	t.Helper()
	st, err := open(t, dir).LoadState()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// installBytes installs bundle b from "stdin", then activates it as
// reboot (if given) asks.
func installBytes(t testing.TB, dir string, b []byte, o install.Options, reboot ...install.Reboot) (*install.Result, error) {
	t.Helper()
	o.Source, o.Stdin = "-", bytes.NewReader(b)
	return installActivate(t, dir, o, reboot)
}

// installActivate installs as o says, then activates the new group as
// reboot (if given) asks, as the CLI does.
func installActivate(t testing.TB, dir string, o install.Options, reboot []install.Reboot) (*install.Result, error) {
	t.Helper()
	d := open(t, dir)
	res, err := install.Install(context.Background(), d, o)
	if err != nil || len(reboot) == 0 {
		return res, err
	}
	return res, install.Activate(d, res, reboot[0])
}

func mustInstall(t testing.TB, dir string, b []byte, o install.Options, reboot ...install.Reboot) *install.Result {
	t.Helper()
	res, err := installBytes(t, dir, b, o, reboot...)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	return res
}

func reboot(t testing.TB, dir string) string {
	t.Helper()
	g, notes, err := sim.Reboot(dir, false)
	if err != nil {
		t.Fatalf("sim reboot: %v (%q)", err, notes)
	}
	for _, n := range notes {
		if strings.Contains(n, "fallback") || strings.Contains(n, "unusable") || strings.Contains(n, "failed") {
			t.Fatalf("sim reboot: the boot loader fell back: %q", notes)
		}
	}
	return g
}

func commit(t testing.TB, dir string) {
	t.Helper()
	changed, err := open(t, dir).Commit()
	if err != nil || !changed {
		t.Fatalf("commit: changed %v, %v", changed, err)
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSlot checks that the slot file starts with img.
func checkSlot(t testing.TB, dir, group string, img []byte) {
	t.Helper()
	b := readFile(t, filepath.Join(dir, "slots/system-"+group+".img"))
	if len(b) < len(img) || !bytes.Equal(b[:len(img)], img) {
		t.Fatalf("slot system-%s does not start with the %d-byte image", group, len(img))
	}
}

// ---- snapshots ----

// snap maps device paths to a description of the file there (type, mode,
// content digest or link target).
type snap map[string]string

func snapshot(t testing.TB, root string) snap {
	t.Helper()
	s := snap{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := path.Clean("/" + filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s[name] = "link " + l
		case fi.IsDir():
			s[name] = fmt.Sprintf("dir %v", fi.Mode())
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			s[name] = fmt.Sprintf("file %v %s", fi.Mode(), hex.EncodeToString(sum[:8]))
		default:
			s[name] = fmt.Sprintf("other %v", fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return s
}

func under(p string, prefixes ...string) bool {
	for _, pre := range prefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// diff lists the paths for which keep is true that differ between a and b.
func diff(a, b snap, keep func(string) bool) []string {
	var out []string
	for p, v := range a {
		if keep(p) && b[p] != v {
			out = append(out, fmt.Sprintf("%s: %q -> %q", p, v, b[p]))
		}
	}
	for p, v := range b {
		if _, ok := a[p]; !ok && keep(p) {
			out = append(out, fmt.Sprintf("%s: new %q", p, v))
		}
	}
	sort.Strings(out)
	return out
}

func bootConfig(p string) bool { return under(p, "/boot", efivarsDir) }

// ---- happy paths ----

// A bundle of format 2, as published before format 3, still installs, from
// a file (checked by its chunks' content digests) and from a URL.
func TestInstallFormat2(t *testing.T) {
	t.Parallel()
	b, _ := mkBundle(t, spec{format: 2, payloads: []pl{sysPayload(fx.imgV1)}})
	if v := binary.LittleEndian.Uint16(b[8:]); v != 2 {
		t.Fatalf("format %d, want 2", v)
	}
	dir := newDevice(t, devOpts{})
	if _, err := installBytes(t, dir, b, install.Options{}); err != nil {
		t.Fatalf("install of a format 2 bundle: %v", err)
	}
	checkSlot(t, dir, "b", fx.imgV1)
	dir = newDevice(t, devOpts{})
	if _, err := installURL(t, dir, serve(t, b, nil), install.Options{}); err != nil {
		t.Fatalf("install of a format 2 bundle from a URL: %v", err)
	}
	checkSlot(t, dir, "b", fx.imgV1)
	// A changed chunk byte of a format 2 bundle is still refused before it
	// is written, by the content digest.
	bad := flip(b, split(t, b).tableEnd(0)+len(split(t, b).data[0])/2)
	dir = newDevice(t, devOpts{})
	if _, err := installBytes(t, dir, bad, install.Options{}); !errors.Is(err, bundle.ErrDigest) && !errors.Is(err, bundle.ErrChunk) {
		t.Fatalf("a changed chunk of a format 2 bundle: %v", err)
	}
}

func TestInstallSlotImage(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{})
	before := snapshot(t, dir)
	bundlePath := filepath.Join(t.TempDir(), "v1.tandem")
	if err := os.WriteFile(bundlePath, fx.sysV1, 0o644); err != nil {
		t.Fatal(err)
	}
	var events []install.Event
	res, err := install.Install(context.Background(), open(t, dir), install.Options{Source: bundlePath,
		Progress: install.Progress{Event: func(e install.Event) { events = append(events, e) }}})
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if res.Group != "b" || res.Version != "1.0.0" || res.BundleHash != fx.hashV1.String() || res.BytesWritten != uint64(len(fx.imgV1)) {
		t.Fatalf("result %+v, want group b, 1.0.0, hash %s, %d bytes", res, fx.hashV1, len(fx.imgV1))
	}
	checkSlot(t, dir, "b", fx.imgV1)
	gs := state(t, dir).Groups["b"]
	if gs.Version != "1.0.0" || gs.BundleHash != fx.hashV1.String() {
		t.Fatalf("state of group b: %+v", gs)
	}
	idx := readFile(t, filepath.Join(dir, "var/lib/tandem", install.IndexDir, "system-b.tidx"))
	if !bytes.HasPrefix(idx, []byte("TIDX")) {
		t.Fatalf("chunk index starts with %q", idx[:min(8, len(idx))])
	}
	// The index lists the bundle's chunk table: its entries must match.
	tab := split(t, fx.sysV1).tables[0]
	if !bytes.HasSuffix(idx, tab) {
		t.Fatalf("chunk index (%d bytes) does not end with the bundle's chunk table (%d bytes)", len(idx), len(tab))
	}
	if len(events) == 0 || events[len(events)-1].Bytes != events[len(events)-1].Total || events[len(events)-1].Total != uint64(len(fx.imgV1)) {
		t.Fatalf("progress: %d events, last %+v", len(events), events[len(events)-1:])
	}
	// --reboot no: the boot configuration and the running group are untouched.
	after := snapshot(t, dir)
	if d := diff(before, after, func(p string) bool {
		return !under(p, "/run", "/var/lib/tandem", "/slots/system-b.img")
	}); len(d) != 0 {
		t.Fatalf("install --reboot no changed:\n%s", strings.Join(d, "\n"))
	}
	if st := status(t, dir); st.Active != "a" || st.Default != "a" || st.Trial != "" {
		t.Fatalf("status after install: %+v", st)
	}
	// Installing again into the same spare group works (no trial yet).
	mustInstall(t, dir, fx.sysV2, install.Options{})
	checkSlot(t, dir, "b", fx.imgV2)
}

// TestInstallRebootCycle: install 2.0.0 with --reboot set, boot it, commit;
// then 1.0.0 is a downgrade, refused unless allowed.
func TestInstallRebootCycle(t *testing.T) {
	for _, flow := range []string{config.FlowGrub, config.FlowUBoot, config.FlowSystemdBoot} {
		t.Run(flow, func(t *testing.T) {
			t.Parallel()
			dir := newDevice(t, devOpts{flow: flow})
			mustInstall(t, dir, fx.sysV2, install.Options{}, install.RebootSet)
			if st := state(t, dir); st.Trial == nil || st.Trial.Group != "b" {
				t.Fatalf("state after --reboot set: trial %+v, want b", st.Trial)
			}
			if sst, _ := device.ReadSimState(dir); sst.Reboot != nil {
				t.Fatalf("--reboot set requested a reboot: %+v", sst.Reboot)
			}
			if g := reboot(t, dir); g != "b" {
				t.Fatalf("booted %s, want b", g)
			}
			if st := status(t, dir); st.Active != "b" || st.Default != "a" {
				t.Fatalf("on trial: %+v", st)
			}
			commit(t, dir)
			if g := reboot(t, dir); g != "b" {
				t.Fatalf("after commit booted %s, want b", g)
			}
			checkSlot(t, dir, "b", fx.imgV2)
			if v, _ := open(t, dir).GroupVersion("b"); v != "2.0.0" {
				t.Fatalf("version of b = %q", v)
			}

			_, err := installBytes(t, dir, fx.sysV1, install.Options{}, install.RebootSet)
			if !errors.Is(err, install.ErrDowngrade) {
				t.Fatalf("downgrade: %v, want ErrDowngrade", err)
			}
			mustInstall(t, dir, fx.sysV1, install.Options{Policy: install.Policy{AllowDowngrade: true}}, install.RebootSet)
			if g := reboot(t, dir); g != "a" {
				t.Fatalf("booted %s, want a", g)
			}
			commit(t, dir)
			checkSlot(t, dir, "a", fx.imgV1)
			checkSlot(t, dir, "b", fx.imgV2)
		})
	}
}

// Install itself neither tries nor reboots (issue 11: the caller decides);
// Activate tries the group only while it still holds the installed bundle:
// an install started on it since is never tried.
func TestInstallThenActivate(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{})
	before := snapshot(t, filepath.Join(dir, "boot"))
	res := mustInstall(t, dir, fx.sysV1, install.Options{})
	if after := snapshot(t, filepath.Join(dir, "boot")); !equalSnap(before, after) {
		t.Fatal("Install changed the boot configuration")
	}
	if sst, _ := device.ReadSimState(dir); sst.Reboot != nil {
		t.Fatalf("Install requested a reboot: %+v", sst.Reboot)
	}
	// Another install starts on group b: it marks b incomplete.
	d := open(t, dir)
	unlock, err := d.Lock()
	if err != nil {
		t.Fatal(err)
	}
	err = d.BeginWrite("b", "3.0.0", "other")
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Activate(open(t, dir), res, install.RebootYes); err == nil {
		t.Fatal("Activate tried a group that no longer holds the bundle")
	}
	if after := snapshot(t, filepath.Join(dir, "boot")); !equalSnap(before, after) {
		t.Fatal("the refused Activate changed the boot configuration")
	}
	if sst, _ := device.ReadSimState(dir); sst.Reboot != nil {
		t.Fatalf("the refused Activate requested a reboot: %+v", sst.Reboot)
	}
	if err := install.Activate(open(t, dir), res, "later"); err == nil {
		t.Fatal("Activate accepted an unknown mode")
	}
}

func TestInstallRebootYes(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{})
	mustInstall(t, dir, fx.sysV1, install.Options{}, install.RebootYes)
	sst, err := device.ReadSimState(dir)
	if err != nil || sst == nil || sst.Reboot == nil {
		t.Fatalf("no reboot request recorded: %+v, %v", sst, err)
	}
	if g := reboot(t, dir); g != "b" {
		t.Fatalf("booted %s, want b", g)
	}
	commit(t, dir)
}

func TestInstallExecutePayload(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{})
	data := fx.imgV2[:200<<10]
	b, _ := mkBundle(t, spec{payloads: []pl{
		{name: "firmware", kind: bundle.KindExecute, handler: []string{handler, "--bank", "1"}, data: data},
	}})
	before := snapshot(t, dir)
	mustInstall(t, dir, b, install.Options{})
	if got := readFile(t, filepath.Join(dir, "recv/firmware")); !bytes.Equal(got, data) {
		t.Fatalf("the handler received %d bytes, want exactly the %d-byte payload", len(got), len(data))
	}
	if got := string(readFile(t, filepath.Join(dir, "recv/firmware.args"))); got != "--bank\n1\n" {
		t.Fatalf("handler arguments %q", got)
	}
	if d := diff(before, snapshot(t, dir), func(p string) bool {
		return !under(p, "/run", "/var/lib/tandem", "/recv")
	}); len(d) != 0 {
		t.Fatalf("an execute payload changed:\n%s", strings.Join(d, "\n"))
	}
}

func TestInstallFileTree(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{app: true})
	mustInstall(t, dir, fx.full, install.Options{}, install.RebootSet)
	checkSlot(t, dir, "b", fx.imgV2)
	slot := filepath.Join(dir, "apps/b")
	if _, err := os.Lstat(filepath.Join(slot, "stale.txt")); !os.IsNotExist(err) {
		t.Fatalf("stale.txt of the previous content survived: %v", err)
	}
	for _, e := range fx.tree {
		p := filepath.Join(slot, strings.TrimSuffix(e.name, "/"))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		switch e.typ {
		case tar.TypeDir:
			if !fi.IsDir() {
				t.Fatalf("%s is %v, want a directory", e.name, fi.Mode())
			}
		case tar.TypeReg:
			if got := readFile(t, p); !fi.Mode().IsRegular() || !bytes.Equal(got, e.data) {
				t.Fatalf("%s: %v, %d bytes; want a regular file of %d bytes", e.name, fi.Mode(), len(got), len(e.data))
			}
			if fi.Mode().Perm() != fs.FileMode(e.mode) {
				t.Errorf("%s: mode %v, want %v", e.name, fi.Mode().Perm(), fs.FileMode(e.mode))
			}
		case tar.TypeSymlink:
			if l, err := os.Readlink(p); err != nil || l != e.link {
				t.Fatalf("%s: link %q, %v; want %q", e.name, l, err, e.link)
			}
			if got := readFile(t, p); !bytes.Equal(got, []byte("level = 3\n")) {
				t.Fatalf("%s resolves to %q", e.name, got)
			}
		case tar.TypeLink:
			ti, err := os.Stat(filepath.Join(slot, e.link))
			if err != nil || !os.SameFile(fi, ti) {
				t.Fatalf("%s is not a hard link of %s (%v)", e.name, e.link, err)
			}
		}
	}
	if got := string(readFile(t, filepath.Join(dir, "apps/a/bin/app"))); got != "#!/bin/sh\necho running app\n" {
		t.Fatalf("the running group's app changed: %q", got)
	}
	if g := reboot(t, dir); g != "b" {
		t.Fatalf("booted %s, want b", g)
	}
	commit(t, dir)
}

func TestInstallPinnedHash(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{noTrust: true})
	b, h := mkBundle(t, spec{unsigned: true, payloads: []pl{sysPayload(fx.imgV1)}})
	if _, err := installBytes(t, dir, b, install.Options{}); !errors.Is(err, signature.ErrNoTrust) {
		t.Fatalf("unsigned bundle on a device without keys: %v, want ErrNoTrust", err)
	}
	res := mustInstall(t, dir, b, install.Options{Trust: install.Trust{BundleHash: h.String()}})
	if res.BundleHash != h.String() {
		t.Fatalf("hash %s, want %s", res.BundleHash, h)
	}
	checkSlot(t, dir, "b", fx.imgV1)
}

func TestInstallPinnedAndSigned(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{})
	unsigned, uh := mkBundle(t, spec{unsigned: true, payloads: []pl{sysPayload(fx.imgV1)}})
	if _, err := installBytes(t, dir, unsigned, install.Options{Trust: install.Trust{BundleHash: uh.String(), RequireSignature: true}}); !errors.Is(err, signature.ErrUnsigned) {
		t.Fatalf("pinned unsigned bundle with RequireSignature: %v, want ErrUnsigned", err)
	}
	untrusted, th := mkBundle(t, spec{sign: fx.signBy, payloads: []pl{sysPayload(fx.imgV1)}})
	if _, err := installBytes(t, dir, untrusted, install.Options{Trust: install.Trust{BundleHash: th.String(), RequireSignature: true}}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("pinned bundle by an untrusted key with RequireSignature: %v, want ErrUntrusted", err)
	}
	_, other := mkBundle(t, spec{version: "3.0.0", payloads: []pl{sysPayload(fx.imgV1)}})
	if _, err := installBytes(t, dir, fx.sysV1, install.Options{Trust: install.Trust{BundleHash: other.String(), RequireSignature: true}}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("signed bundle with another pinned hash: %v, want ErrUntrusted", err)
	}
	res := mustInstall(t, dir, fx.sysV1, install.Options{Trust: install.Trust{BundleHash: fx.hashV1.String(), RequireSignature: true}})
	if res.BundleHash != fx.hashV1.String() {
		t.Fatalf("hash %s, want %s", res.BundleHash, fx.hashV1)
	}
	checkSlot(t, dir, "b", fx.imgV1)
}

func TestInstallInsecure(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{noTrust: true})
	b, h := mkBundle(t, spec{unsigned: true, payloads: []pl{sysPayload(fx.imgV1)}})
	var warnings []string
	mustInstall(t, dir, b, install.Options{Trust: install.Trust{Insecure: true}, Progress: install.Progress{Warn: func(s string) { warnings = append(warnings, s) }}})
	if len(warnings) != 1 || !strings.Contains(warnings[0], "INSECURE") || !strings.Contains(warnings[0], h.String()) {
		t.Fatalf("warnings %q, want one INSECURE warning naming the bundle hash", warnings)
	}
	checkSlot(t, dir, "b", fx.imgV1)
}

func TestInstallCertificateChain(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{})
	ca, caKey := newCA(t, "Fleet Root")
	leaf, leafKey := newLeaf(t, ca, caKey, time.Now().Add(-24*time.Hour), time.Now().Add(365*24*time.Hour))
	b, _ := mkBundle(t, spec{sign: signWith(leafKey, [][]byte{leaf.Raw}), payloads: []pl{sysPayload(fx.imgV1)}})
	if _, err := installBytes(t, dir, b, install.Options{}); !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("without the root: %v, want ErrUntrusted", err)
	}
	mustInstall(t, dir, b, install.Options{Trust: install.Trust{Files: []string{certFile(t, ca)}}})
	checkSlot(t, dir, "b", fx.imgV1)
}

// ---- bad input ----

type badCase struct {
	name   string
	dev    devOpts
	setup  func(t *testing.T, dir string) // before the "before" snapshot
	bundle func(t *testing.T) []byte
	opts   install.Options
	want   error // nil: any error
	or     error // another error class that is as right as want
	// preWrite: refused before anything is written (the whole device, state
	// database and spare slots included, stays as it was).
	preWrite bool
	// escape names a file a tree payload tries to create outside its slot.
	escape string
}

func fixed(b []byte) func(*testing.T) []byte { return func(*testing.T) []byte { return b } }

func withSys(s spec) func(*testing.T) []byte {
	return func(t *testing.T) []byte {
		if s.payloads == nil {
			s.payloads = []pl{sysPayload(fx.imgV1)}
		}
		b, _ := mkBundle(t, s)
		return b
	}
}

// fromFull derives a bundle from fx.full.
func fromFull(f func(t *testing.T, s *sections) []byte) func(*testing.T) []byte {
	return func(t *testing.T) []byte { return f(t, split(t, fx.full)) }
}

// treeBundle is a signed bundle with one tree payload for alias app.
func treeBundle(es ...tarEntry) func(*testing.T) []byte {
	return func(t *testing.T) []byte {
		b, _ := mkBundle(t, spec{payloads: []pl{treePayload(tarBytes(es))}})
		return b
	}
}

// bomb is a payload whose one chunk is declared as 4 KiB but is a zstd
// frame of 1 MiB of zeros; hashes and signature are all fine.
func bomb(t *testing.T) []byte {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := enc.EncodeAll(make([]byte, 1<<20), nil)
	enc.Close()
	const size = 4096
	claimed := sha256.Sum256(make([]byte, size))
	e := bundle.Entry{Digest: claimed, Size: size, StoredSize: uint32(len(frame))}
	table := marshalTable([]bundle.Entry{e})
	h := &bundle.Header{Compatible: compatible, Version: "1.0.0", Created: time.Now().Unix(), Payloads: []bundle.Payload{{
		Kind: bundle.KindSlot, Chunker: bundle.ChunkerFixed, ChunkMin: size, ChunkAvg: size, ChunkMax: size,
		Size: size, StoredSize: uint64(len(frame)), Chunks: 1, TableDigest: bundle.TableDigest(table),
		StoredDigest: sha256.Sum256(frame), Digest: claimed,
		Name: "system", Target: "system",
	}}}
	s := &sections{h: h, tables: [][]byte{table}, data: [][]byte{frame}}
	return s.join(t, fx.sign)
}

func TestInstallBadInput(t *testing.T) {
	now := time.Now()
	if now.Before(signature.DefaultFloor().Add(4 * 24 * time.Hour)) {
		t.Fatalf("the clock (%v) is not after signature.DefaultFloor: the certificate cases need a set clock", now)
	}
	ca, caKey := newCA(t, "Fleet Root")
	otherCA, otherCAKey := newCA(t, "Someone Else's Root")
	trustCA := []string{certFile(t, ca)}
	goodLeaf, goodKey := newLeaf(t, ca, caKey, now.Add(-time.Hour), now.Add(time.Hour))
	strayLeaf, strayKey := newLeaf(t, otherCA, otherCAKey, now.Add(-time.Hour), now.Add(time.Hour))
	// Valid from just after the floor to two days ago: expired now.
	oldLeaf, oldKey := newLeaf(t, ca, caKey, signature.DefaultFloor().Add(24*time.Hour), now.Add(-48*time.Hour))
	unique := fmt.Sprintf("tandem-install-test-%d-%d", os.Getpid(), now.UnixNano())
	// Truncation points in fx.full (system image, then app tree).
	fs0 := split(t, fx.full)
	e0 := parseTable(t, fs0, 0)
	trunc := func(n int) func(*testing.T) []byte { return fixed(fx.full[:n]) }

	cases := []badCase{
		// truncated streams
		{name: "truncated/empty", bundle: trunc(0), want: bundle.ErrTruncated, preWrite: true},
		{name: "truncated/in-header", bundle: trunc(len(fs0.hb) / 2), want: bundle.ErrTruncated, preWrite: true},
		{name: "truncated/end-of-header", bundle: trunc(len(fs0.hb)), want: bundle.ErrTruncated, preWrite: true},
		{name: "truncated/end-of-signatures", dev: devOpts{app: true}, bundle: trunc(len(fs0.hb) + len(fs0.sb)), want: bundle.ErrTruncated},
		{name: "truncated/end-of-chunk-table", dev: devOpts{app: true}, bundle: trunc(fs0.tableEnd(0)), want: bundle.ErrTruncated},
		{name: "truncated/inside-first-chunk", dev: devOpts{app: true}, bundle: trunc(fs0.tableEnd(0) + int(e0[0].StoredSize)/2), want: bundle.ErrTruncated},
		{name: "truncated/inside-later-chunk", dev: devOpts{app: true}, bundle: trunc(fs0.tableEnd(0) + len(fs0.data[0])*2/3), want: bundle.ErrTruncated},
		{name: "truncated/end-of-payload", dev: devOpts{app: true}, bundle: trunc(fs0.dataEnd(0)), want: bundle.ErrTruncated},
		{name: "truncated/end-of-second-table", dev: devOpts{app: true}, bundle: trunc(fs0.tableEnd(1)), want: bundle.ErrTruncated},
		{name: "truncated/last-byte", dev: devOpts{app: true}, bundle: trunc(len(fx.full) - 1), want: bundle.ErrTruncated},
		{name: "trailing-data", dev: devOpts{app: true}, bundle: fixed(slices.Concat(fx.full, []byte{0})), want: bundle.ErrTrailing},

		// changed bytes
		{name: "changed/header", dev: devOpts{app: true}, bundle: fromFull(func(t *testing.T, s *sections) []byte {
			i := bytes.Index(fx.full, []byte("tandem test bundle"))
			if i < 0 || i >= len(s.hb) {
				t.Fatal("name not in the header")
			}
			return flip(fx.full, i+3)
		}), want: signature.ErrBadSignature, preWrite: true},
		{name: "changed/signature", dev: devOpts{app: true}, bundle: fromFull(func(t *testing.T, s *sections) []byte {
			return flip(fx.full, len(s.hb)+len(s.sb)-5)
		}), want: signature.ErrBadSignature, preWrite: true},
		{name: "changed/chunk-table", dev: devOpts{app: true}, bundle: fromFull(func(t *testing.T, s *sections) []byte {
			return flip(fx.full, s.tableEnd(0)-len(s.stored[0])-len(s.tables[0])/2)
		}), want: bundle.ErrDigest},
		// A changed byte of a zstd chunk breaks its frame (ErrChunk), its
		// content (ErrDigest) or, when the frame still gives the same content,
		// the payload's stored digest (ErrDigest).
		{name: "changed/chunk-data", dev: devOpts{app: true}, bundle: fromFull(func(t *testing.T, s *sections) []byte {
			return flip(fx.full, s.tableEnd(0)+len(s.data[0])/2)
		}), want: bundle.ErrDigest, or: bundle.ErrChunk},
		{name: "changed/tree-data", dev: devOpts{app: true}, bundle: fromFull(func(t *testing.T, s *sections) []byte {
			return flip(fx.full, s.tableEnd(1)+len(s.data[1])/2)
		}), want: bundle.ErrDigest, or: bundle.ErrChunk},

		// size limits and lying tables
		{name: "header-over-limit", bundle: fromFull(func(t *testing.T, s *sections) []byte {
			b := slices.Clone(fx.full)
			b[12], b[13], b[14], b[15] = 1, 0, 0x10, 0 // MaxHeaderSize + 1
			return b
		}), want: bundle.ErrTooLarge, preWrite: true},
		{name: "signatures-over-limit", bundle: fromFull(func(t *testing.T, s *sections) []byte {
			b := slices.Clone(fx.full)
			o := len(s.hb) + 4
			b[o], b[o+1], b[o+2], b[o+3] = 0, 0, 0x10, 0 // 1 MiB
			return b
		}), want: bundle.ErrTooLarge, preWrite: true},
		{name: "table-disagrees-with-header", dev: devOpts{app: true}, bundle: fromFull(func(t *testing.T, s *sections) []byte {
			s.h.Payloads[0].Size++ // the table sums to one byte less; re-signed by the trusted key
			return s.join(t, fx.sign)
		}), want: bundle.ErrFormat},
		{name: "table-lies-about-chunk-size", dev: devOpts{app: true}, bundle: fromFull(func(t *testing.T, s *sections) []byte {
			es := parseTable(t, s, 0)
			i := slices.IndexFunc(es, func(e bundle.Entry) bool { return e.Compressed() && e.Size > s.h.Payloads[0].ChunkMin })
			if i < 0 {
				t.Fatal("no compressed chunk")
			}
			es[i].Size-- // the chunk decompresses to one byte more than the table says
			s.tables[0] = marshalTable(es)
			s.h.Payloads[0].Size--
			s.h.Payloads[0].TableDigest = bundle.TableDigest(s.tables[0])
			return s.join(t, fx.sign)
		}), want: bundle.ErrChunk},
		{name: "decompression-bomb", bundle: bomb, want: bundle.ErrChunk},

		// signatures
		{name: "unsigned", bundle: withSys(spec{unsigned: true}), want: signature.ErrUnsigned, preWrite: true},
		{name: "unknown-key", bundle: withSys(spec{sign: fx.signBy}), want: signature.ErrUntrusted, preWrite: true},
		{name: "no-trusted-keys", dev: devOpts{noTrust: true}, bundle: fixed(fx.sysV1), want: signature.ErrNoTrust, preWrite: true},
		{name: "cert/untrusted-root", bundle: withSys(spec{sign: signWith(strayKey, [][]byte{strayLeaf.Raw})}),
			opts: install.Options{Trust: install.Trust{Files: trustCA}}, want: signature.ErrUntrusted, preWrite: true},
		{name: "cert/expired-leaf", bundle: withSys(spec{sign: signWith(oldKey, [][]byte{oldLeaf.Raw})}),
			opts: install.Options{Trust: install.Trust{Files: trustCA}}, want: signature.ErrExpired, preWrite: true},
		{name: "cert/good-leaf-untrusted-root", bundle: withSys(spec{sign: signWith(goodKey, [][]byte{goodLeaf.Raw})}),
			opts: install.Options{Trust: install.Trust{Files: []string{certFile(t, otherCA)}}}, want: signature.ErrUntrusted, preWrite: true},
		{name: "wrong-pinned-hash", bundle: withSys(spec{unsigned: true, version: "1.0.1"}), // not sysV1, whatever the clock
			opts: install.Options{Trust: install.Trust{BundleHash: fx.hashV1.String()}}, want: signature.ErrUntrusted, preWrite: true},

		// policy
		{name: "wrong-compatible", bundle: withSys(spec{compatible: "acme-gw"}), want: install.ErrIncompatible, preWrite: true},
		{name: "downgrade", dev: devOpts{factory: "2.0.0"}, bundle: fixed(fx.sysV1), want: install.ErrDowngrade, preWrite: true},
		// Issue 11, hardening 1: an unknown or non-semver running version
		// does not switch the downgrade check off.
		{name: "downgrade/running-unknown", dev: devOpts{factory: "-"}, bundle: fixed(fx.sysV1), want: install.ErrDowngrade, preWrite: true},
		{name: "downgrade/running-dotted", dev: devOpts{factory: "2024.06.1"}, bundle: fixed(fx.sysV1), want: install.ErrDowngrade, preWrite: true},
		{name: "downgrade/running-debian-12", setup: func(t *testing.T, dir string) {
			replaceIn(t, filepath.Join(dir, "etc/tandem/system.toml"), "factory-version = \"0.1.0\"\n", "")
			writeFileIn(t, filepath.Join(dir, "etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\n")
		}, bundle: fixed(fx.sysV1), want: install.ErrDowngrade, preWrite: true},
		{name: "min-version", dev: devOpts{factory: "1.0.0"}, bundle: withSys(spec{version: "3.0.0", minVersion: "2.0.0"}),
			want: install.ErrIncompatible, preWrite: true},
		{name: "payload-larger-than-slot", dev: devOpts{slotSize: 64 << 10}, bundle: fixed(fx.sysV1), want: install.ErrPayload, preWrite: true},
		{name: "unknown-slot-alias", bundle: withSys(spec{payloads: []pl{{name: "data", target: "data", kind: bundle.KindSlot, data: fx.imgV1}}}),
			want: install.ErrPayload, preWrite: true},
		{name: "tree-into-file-slot", bundle: withSys(spec{payloads: []pl{{name: "system", target: "system", kind: bundle.KindTree, data: fx.imgV1}}}),
			want: install.ErrPayload, preWrite: true},
		{name: "active-group", bundle: fixed(fx.sysV1), opts: install.Options{Group: "a"}, want: device.ErrRefused, preWrite: true},
		{name: "trial-pending", setup: func(t *testing.T, dir string) {
			mustInstall(t, dir, fx.sysV1, install.Options{}, install.RebootSet)
			if g := reboot(t, dir); g != "b" {
				t.Fatalf("booted %s, want b", g)
			}
		}, bundle: fixed(fx.sysV2), want: device.ErrRefused, preWrite: true},
		{name: "pre-update-hook-fails", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "etc/tandem/hooks/update-install/pre-update/10-fail"),
				"#!/bin/sh\necho checking battery >&2\necho battery too low >&2\nexit 1\n", 0o755)
		}, bundle: fixed(fx.sysV1), want: nil, preWrite: true},
		{name: "handler-fails", setup: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "usr/libexec/tandem-test/fail"),
				"#!/bin/sh\nhead -c 1000 >/dev/null\necho erasing bank 1\necho flash failed >&2\nexit 3\n", 0o755)
		}, bundle: withSys(spec{payloads: []pl{
			{name: "firmware", kind: bundle.KindExecute, handler: []string{"/usr/libexec/tandem-test/fail"}, data: fx.imgV1},
		}})},

		// unsafe file trees
		{name: "tree/dotdot", dev: devOpts{app: true}, escape: "/apps/" + unique,
			bundle: treeBundle(tarEntry{name: "../" + unique, typ: tar.TypeReg, mode: 0o644, data: []byte("x")}), want: install.ErrUnsafeTree},
		{name: "tree/dotdot-inside", dev: devOpts{app: true}, escape: "/apps/" + unique,
			bundle: treeBundle(tarEntry{name: "doc/", typ: tar.TypeDir, mode: 0o755},
				tarEntry{name: "doc/../../" + unique, typ: tar.TypeReg, mode: 0o644, data: []byte("x")}), want: install.ErrUnsafeTree},
		{name: "tree/absolute", dev: devOpts{app: true}, escape: "/etc/" + unique,
			bundle: treeBundle(tarEntry{name: "/etc/" + unique, typ: tar.TypeReg, mode: 0o644, data: []byte("x")}), want: install.ErrUnsafeTree},
		{name: "tree/symlink-out", dev: devOpts{app: true}, escape: "/etc/" + unique,
			bundle: treeBundle(tarEntry{name: "etc", typ: tar.TypeSymlink, link: "../../etc"},
				tarEntry{name: "etc/" + unique, typ: tar.TypeReg, mode: 0o644, data: []byte("x")}), want: install.ErrUnsafeTree},
		{name: "tree/symlink-absolute", dev: devOpts{app: true}, escape: "/etc/" + unique,
			bundle: treeBundle(tarEntry{name: "etc", typ: tar.TypeSymlink, link: "/etc"},
				tarEntry{name: "etc/" + unique, typ: tar.TypeReg, mode: 0o644, data: []byte("x")}), want: install.ErrUnsafeTree},
		{name: "tree/symlink-chain-out", dev: devOpts{app: true}, escape: "/apps/" + unique,
			// up -> ".." stays inside (it names the slot itself); out ->
			// "d/up/.." looks inside but resolves to the slot's parent.
			bundle: treeBundle(tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o755},
				tarEntry{name: "d/up", typ: tar.TypeSymlink, link: ".."},
				tarEntry{name: "out", typ: tar.TypeSymlink, link: "d/up/.."},
				tarEntry{name: "out/" + unique, typ: tar.TypeReg, mode: 0o644, data: []byte("x")}), want: install.ErrUnsafeTree},
		{name: "tree/symlink-made-out-later", dev: devOpts{app: true},
			// out -> "f/.." is inside while f does not exist; f -> "." makes it the slot's parent.
			bundle: treeBundle(tarEntry{name: "out", typ: tar.TypeSymlink, link: "f/.."},
				tarEntry{name: "f", typ: tar.TypeSymlink, link: "."}), want: install.ErrUnsafeTree},
		{name: "tree/hardlink-out", dev: devOpts{app: true},
			bundle: treeBundle(tarEntry{name: "passwd", typ: tar.TypeLink, link: "../../etc/passwd"}), want: install.ErrUnsafeTree},
		{name: "tree/hardlink-through-symlink", dev: devOpts{app: true},
			// A hard link to the running group's file would let the spare group change it.
			bundle: treeBundle(tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o755},
				tarEntry{name: "d/up", typ: tar.TypeSymlink, link: ".."},
				tarEntry{name: "out", typ: tar.TypeSymlink, link: "d/up/.."},
				tarEntry{name: "app", typ: tar.TypeLink, link: "out/a/bin/app"}), want: install.ErrUnsafeTree},
		{name: "tree/device-node", dev: devOpts{app: true},
			bundle: treeBundle(tarEntry{name: "sda", typ: tar.TypeBlock, mode: 0o600}), want: install.ErrUnsafeTree},
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := newDevice(t, c.dev)
			if c.setup != nil {
				c.setup(t, dir)
			}
			b := c.bundle(t)
			stBefore := status(t, dir)
			target := "b"
			if c.opts.Group != "" {
				target = c.opts.Group
			}
			if stBefore.Active == "b" {
				target = "a"
			}
			before := snapshot(t, dir)
			_, err := installBytes(t, dir, b, c.opts)
			if err == nil {
				t.Fatal("install succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) && (c.or == nil || !errors.Is(err, c.or)) {
				t.Fatalf("install: %v\nwant %v", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			after := snapshot(t, dir)
			if d := diff(before, after, bootConfig); len(d) != 0 {
				t.Errorf("boot configuration changed:\n%s", strings.Join(d, "\n"))
			}
			active := "/slots/system-" + stBefore.Active + ".img"
			if before[active] == "" || before[active] != after[active] {
				t.Errorf("active slot %s: %q -> %q", active, before[active], after[active])
			}
			st := status(t, dir)
			if st.Active != stBefore.Active || st.Default != stBefore.Default || st.Trial != stBefore.Trial {
				t.Errorf("status %+v, before %+v", st, stBefore)
			}
			keep := func(p string) bool {
				return !under(p, "/run", "/var/lib/tandem", "/slots/system-"+target+".img", "/apps/"+target)
			}
			if c.preWrite {
				keep = func(p string) bool { return !under(p, "/run") }
			}
			if d := diff(before, after, keep); len(d) != 0 {
				t.Errorf("files changed:\n%s", strings.Join(d, "\n"))
			}
			if c.escape != "" {
				for _, p := range []string{filepath.Join(dir, c.escape), c.escape} {
					if _, err := os.Lstat(p); !os.IsNotExist(err) {
						os.Remove(p)
						t.Errorf("%s was written outside the slot (%v)", p, err)
					}
				}
			}
			if !c.preWrite {
				if gs := state(t, dir).Groups[target]; gs.Incomplete == nil || gs.Version != "" {
					t.Errorf("state records %+v for the half-written group %s, want it incomplete", gs, target)
				}
			}
			if c.name == "pre-update-hook-fails" && !strings.Contains(err.Error(), "battery too low") {
				t.Errorf("error %q does not say why the hook failed", err)
			}
			if c.name == "handler-fails" && !strings.Contains(err.Error(), "flash failed") {
				t.Errorf("error %q does not say why the handler failed", err)
			}
		})
	}
}

// TestInterruptedInstall: an install that stops after part of the payload
// was written leaves the target group unbootable by accident and
// unrecorded, and the next complete install works.
func TestInterruptedInstall(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{slotSize: 4 << 20})
	// Group b holds 1.0.0 and is set to boot on trial.
	mustInstall(t, dir, fx.sysV1, install.Options{}, install.RebootSet)
	if st := status(t, dir); st.Trial != "b" {
		t.Fatalf("trial %q, want b", st.Trial)
	}
	// An image larger than the installer's 1 MiB write buffer, so that part
	// of it reaches the slot before the stream ends.
	big := tarBytes(changed(docEntries(2560 << 10)))
	if len(big) < 2<<20 {
		t.Fatalf("image of %d bytes; want over 2 MiB", len(big))
	}
	bigBundle, _ := mkBundle(t, spec{version: "2.0.0", payloads: []pl{sysPayload(big)}})
	s := split(t, bigBundle)
	cut := s.tableEnd(0) + len(s.data[0])*3/4
	_, err := installBytes(t, dir, bigBundle[:cut], install.Options{}, install.RebootSet)
	if !errors.Is(err, bundle.ErrTruncated) {
		t.Fatalf("truncated install: %v, want ErrTruncated", err)
	}
	b := readFile(t, filepath.Join(dir, "slots/system-b.img"))
	if bytes.HasPrefix(b, fx.imgV1) || !bytes.HasPrefix(b, big[:1<<20]) {
		t.Fatal("slot b does not hold the first part of 2.0.0: the test does not test an interrupted write")
	}
	st := status(t, dir)
	if st.Trial != "" || st.Active != "a" || st.Default != "a" {
		t.Fatalf("status after the interrupted install: %+v; want no trial pending", st)
	}
	// Issue 11, hardening 12: the half-written group is marked incomplete,
	// has no version, and is neither tried nor committed.
	db := state(t, dir)
	if gs := db.Groups["b"]; gs.Incomplete == nil || gs.Incomplete.Version != "2.0.0" || gs.Version != "" {
		t.Fatalf("state records %+v for the half-written group b, want it incomplete", gs)
	}
	if _, err := open(t, dir).TrySpare(); !errors.Is(err, device.ErrIncomplete) || !errors.Is(err, device.ErrRefused) {
		t.Fatalf("try of the half-written group b: %v, want ErrIncomplete", err)
	}
	if db.Trial != nil {
		t.Fatalf("state still records trial %+v", db.Trial)
	}
	if v, src := open(t, dir).GroupVersion("b"); v != "" {
		t.Fatalf("group b reports version %q (%s)", v, src)
	}
	// The slot's chunk index must not describe content the slot no longer has.
	idx := filepath.Join(dir, "var/lib/tandem", install.IndexDir, "system-b.tidx")
	if ib, err := os.ReadFile(idx); err == nil && bytes.HasSuffix(ib, split(t, fx.sysV1).tables[0]) {
		t.Errorf("the chunk index of system-b still describes 1.0.0 after a partial write of 2.0.0")
	}
	if g := reboot(t, dir); g != "a" {
		t.Fatalf("after the interrupted install the device booted %s, want a", g)
	}

	mustInstall(t, dir, bigBundle, install.Options{}, install.RebootSet)
	checkSlot(t, dir, "b", big)
	if gs := state(t, dir).Groups["b"]; gs.Incomplete != nil {
		t.Fatalf("the complete install left group b marked incomplete: %+v", gs)
	}
	if v, _ := open(t, dir).GroupVersion("b"); v != "2.0.0" {
		t.Fatalf("version of b = %q, want 2.0.0", v)
	}
	if ib := readFile(t, idx); !bytes.HasSuffix(ib, s.tables[0]) {
		t.Errorf("the chunk index of system-b does not list the chunks of 2.0.0")
	}
	if g := reboot(t, dir); g != "b" {
		t.Fatalf("booted %s, want b", g)
	}
	commit(t, dir)
}

// TestCancelledAtLastByte: an install cancelled once every byte is written
// records nothing (the group stays incomplete and cannot be tried), and the
// next install of the same bundle completes — from a stream, and by
// dynamic delta, whose resume keeps every chunk written.
func TestCancelledAtLastByte(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		dir    func(*testing.T) string
		source func(*testing.T) install.Options
		reuse  bool // the resumed install keeps every byte written
	}{
		{"stream", func(t *testing.T) string { return newDevice(t, devOpts{}) }, func(*testing.T) install.Options {
			return install.Options{Source: "-", Stdin: bytes.NewReader(fx.sysV2)}
		}, false},
		{"dynamic delta", deltaDevice, func(t *testing.T) install.Options { return install.Options{Source: serve(t, fx.sysV2, nil)} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			ctx, cancel := context.WithCancel(context.Background())
			o := tc.source(t)
			o.Progress.Event = func(e install.Event) {
				if e.Event == "progress" && e.Bytes == e.Total {
					cancel()
				}
			}
			if _, err := install.Install(ctx, open(t, dir), o); !errors.Is(err, context.Canceled) {
				t.Fatalf("the install cancelled at its last byte returned %v", err)
			}
			if gs := state(t, dir).Groups["b"]; gs.Incomplete == nil || gs.Version != "" {
				t.Fatalf("state records %+v for the cancelled group b, want it incomplete", gs)
			}
			if _, err := open(t, dir).TrySpare(); !errors.Is(err, device.ErrIncomplete) {
				t.Fatalf("try of the cancelled group b: %v, want ErrIncomplete", err)
			}
			res, err := installActivate(t, dir, tc.source(t), []install.Reboot{install.RebootSet})
			if err != nil {
				t.Fatal(err)
			}
			checkSlot(t, dir, "b", fx.imgV2)
			if tc.reuse && res.Transfer.BytesReused != int64(len(fx.imgV2)) {
				t.Errorf("the resumed delta install reused %d of %d bytes", res.Transfer.BytesReused, len(fx.imgV2))
			}
			if g := reboot(t, dir); g != "b" {
				t.Fatalf("booted %s, want b", g)
			}
		})
	}
}

func TestInstallNotPinnedSentinel(t *testing.T) {
	t.Parallel()
	dir := newDevice(t, devOpts{})
	_, other := mkBundle(t, spec{version: "3.0.0", payloads: []pl{sysPayload(fx.imgV1)}})
	_, err := installBytes(t, dir, fx.sysV1, install.Options{Trust: install.Trust{BundleHash: other.String(), RequireSignature: true}})
	if !errors.Is(err, install.ErrNotPinned) || !errors.Is(err, signature.ErrUntrusted) || !strings.Contains(err.Error(), "is not the pinned") {
		t.Fatalf("another bundle than the pinned one: %v, want ErrNotPinned and ErrUntrusted", err)
	}
	// A badly signed bundle with the pinned hash is not ErrNotPinned.
	untrusted, th := mkBundle(t, spec{sign: fx.signBy, payloads: []pl{sysPayload(fx.imgV1)}})
	if _, err := installBytes(t, dir, untrusted, install.Options{Trust: install.Trust{BundleHash: th.String(), RequireSignature: true}}); errors.Is(err, install.ErrNotPinned) || !errors.Is(err, signature.ErrUntrusted) {
		t.Fatalf("pinned bundle by an untrusted key: %v", err)
	}
}

func replaceIn(t *testing.T, p, old, new string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", p, old)
	}
	writeFileIn(t, p, strings.Replace(string(b), old, new, 1))
}

func writeFileIn(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
