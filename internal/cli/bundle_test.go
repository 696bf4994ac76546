package cli

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/testutil"
)

// bundleFixture makes a key pair and a 300 KiB image in a temp dir.
func bundleFixture(t *testing.T) (dir, image string) {
	t.Helper()
	dir = t.TempDir()
	if r := run(t, nil, "key", "generate", filepath.Join(dir, "release")); r.code != 0 {
		t.Fatalf("key generate: %+v", r)
	}
	var b bytes.Buffer
	for i := 0; b.Len() < 300<<10; i++ {
		b.WriteString(strings.Repeat("tandem bundle line ", i%7+1))
		b.WriteByte(byte(i))
	}
	image = filepath.Join(dir, "v2.img")
	if err := os.WriteFile(image, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, image
}

func createBundle(t *testing.T, env map[string]string, out, image string, extra ...string) string {
	t.Helper()
	r := run(t, env, append([]string{"bundle", "create", out, "--compatible", "tandem-sim", "--version", "2.0.0", "--slot", "system=" + image}, extra...)...)
	if r.code != 0 {
		t.Fatalf("bundle create: %+v", r)
	}
	return strings.TrimSpace(r.stdout)
}

func TestBundleCommands(t *testing.T) {
	dir, image := bundleFixture(t)
	key, pub := filepath.Join(dir, "release.key"), filepath.Join(dir, "release.pub")
	out := filepath.Join(dir, "v2.tandem")
	epoch := map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}
	hash := createBundle(t, epoch, out, image, "--key", key)

	// Reproducible: the same inputs give the same bytes.
	again := filepath.Join(dir, "again.tandem")
	if h := createBundle(t, epoch, again, image, "--key", key); h != hash {
		t.Fatalf("hash %s, then %s", hash, h)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("the same inputs gave different bundle bytes")
	}

	r := run(t, nil, "bundle", "inspect", out, "--json", "--chunks")
	var info BundleInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil {
		t.Fatalf("inspect: %+v", r)
	}
	if info.Hash != hash || len(info.Signers) != 1 || len(info.Payloads) != 1 || info.Payloads[0].Size != uint64(len(readFile(t, image))) {
		t.Fatalf("inspect: %+v", info)
	}
	var sum uint64
	for _, c := range info.Payloads[0].Chunks {
		if c.Offset != sum {
			t.Fatalf("chunk offset %d, want %d", c.Offset, sum)
		}
		sum += uint64(c.Size)
	}

	if r := run(t, nil, "bundle", "verify", out, "--trust", pub); r.code != 0 || !strings.Contains(r.stdout, "every chunk verified") {
		t.Fatalf("verify: %+v", r)
	}
	other, _ := bundleFixture(t)
	if r := run(t, nil, "bundle", "verify", out, "--trust", filepath.Join(other, "release.pub")); r.code != ExitBundle {
		t.Fatalf("verify with another key: %+v, want exit %d", r, ExitBundle)
	}

	// sign adds a signature and keeps the hash.
	if r := run(t, nil, "bundle", "sign", out, "--key", filepath.Join(other, "release.key")); r.code != 0 || strings.TrimSpace(r.stdout) != hash {
		t.Fatalf("sign: %+v", r)
	}
	if r := run(t, nil, "bundle", "verify", out, "--trust", filepath.Join(other, "release.pub")); r.code != 0 {
		t.Fatalf("verify with the added key: %+v", r)
	}

	extracted := filepath.Join(dir, "system.out")
	if r := run(t, nil, "bundle", "extract", out, "system", extracted, "--trust", pub); r.code != 0 || !bytes.Equal(readFile(t, extracted), readFile(t, image)) {
		t.Fatalf("extract: %+v", r)
	}
}

// The detached path works with signatures made by openssl.
func TestDetachedSigningWithOpenSSL(t *testing.T) {
	openssl := testutil.NeedTool(t, "openssl")
	dir, image := bundleFixture(t)
	out := filepath.Join(dir, "v2.tandem")
	hash := createBundle(t, nil, out, image)
	key, pub := filepath.Join(dir, "ossl.key"), filepath.Join(dir, "ossl.pub")
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "ed25519", "-out", key},
		{"pkey", "-in", key, "-pubout", "-out", pub},
	} {
		if b, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, b)
		}
	}
	r := run(t, nil, "bundle", "signing-message", out)
	msg, sig := filepath.Join(dir, "msg.bin"), filepath.Join(dir, "msg.sig")
	if err := os.WriteFile(msg, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(openssl, "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", msg, "-out", sig).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkeyutl: %v\n%s", err, b)
	}
	if r := run(t, nil, "bundle", "attach", out, "--signature", sig, "--public-key", pub); r.code != 0 || strings.TrimSpace(r.stdout) != hash {
		t.Fatalf("attach: %+v", r)
	}
	if r := run(t, nil, "bundle", "verify", out, "--trust", pub); r.code != 0 {
		t.Fatalf("verify: %+v", r)
	}
	// A signature over something else is refused before it is attached.
	if err := os.WriteFile(msg, []byte("something else"), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command(openssl, "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", msg, "-out", sig).Run()
	if r := run(t, nil, "bundle", "attach", out, "--signature", sig, "--public-key", pub); r.code != ExitBundle {
		t.Fatalf("attach of a wrong signature: %+v", r)
	}
	// openssl-made keys sign bundles directly too.
	if r := run(t, nil, "bundle", "sign", out, "--key", key); r.code != 0 {
		t.Fatalf("sign with an openssl key: %+v", r)
	}
}

// update install from a URL, JSON lines on stdout, then boot and commit.
func TestUpdateInstallFromURL(t *testing.T) {
	dir, image := bundleFixture(t)
	out := filepath.Join(dir, "v2.tandem")
	hash := createBundle(t, nil, out, image, "--key", filepath.Join(dir, "release.key"))
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	dev := newSim(t, "uboot", "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M")
	r := run(t, nil, "--root", dev, "update", "install", srv.URL+"/v2.tandem", "--reboot", "set")
	if r.code != 0 {
		t.Fatalf("install: %+v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["event"] != "done" || last["bundleHash"] != hash {
		t.Fatalf("last event %q", lines[len(lines)-1])
	}
	if r := run(t, nil, "sim", "reboot", dev); lastLine(r.stdout) != "b" {
		t.Fatalf("reboot: %+v", r)
	}
	if r := run(t, nil, "--root", dev, "system", "commit"); r.code != 0 {
		t.Fatalf("commit: %+v", r)
	}
	if got := readFile(t, filepath.Join(dev, "slots/system-b.img")); !bytes.HasPrefix(got, readFile(t, image)) {
		t.Fatal("slot b does not hold the image")
	}
	// A 404 is a clean failure with an error event.
	r = run(t, nil, "--root", dev, "update", "install", srv.URL+"/missing.tandem")
	if r.code == 0 || !strings.Contains(r.stdout, `"event":"error"`) || !strings.Contains(r.stderr, "404") {
		t.Fatalf("missing URL: %+v", r)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// https with a private CA: --ca-file makes it work; without it the install
// fails on the certificate and writes nothing.
func TestUpdateInstallHTTPS(t *testing.T) {
	dir, image := bundleFixture(t)
	createBundle(t, nil, filepath.Join(dir, "v2.tandem"), image, "--key", filepath.Join(dir, "release.key"))
	srv := httptest.NewTLSServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	dev := newSim(t, "grub", "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M")
	if r := run(t, nil, "--root", dev, "update", "install", srv.URL+"/v2.tandem"); r.code == 0 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("https without the CA: %+v", r)
	}
	if r := run(t, nil, "--root", dev, "update", "install", srv.URL+"/v2.tandem", "--ca-file", ca, "--header", "X-Device: sim"); r.code != 0 {
		t.Fatalf("https with --ca-file: %+v", r)
	}
}

// A server that requires a client certificate accepts --client-cert/--client-key.
func TestUpdateInstallClientCert(t *testing.T) {
	dir, image := bundleFixture(t)
	createBundle(t, nil, filepath.Join(dir, "v2.tandem"), image, "--key", filepath.Join(dir, "release.key"))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)

	srv := httptest.NewUnstartedServer(http.FileServer(http.Dir(dir)))
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)

	dev := newSim(t, "grub", "--trust", filepath.Join(dir, "release.pub"), "--slot-size", "1M")
	url := srv.URL + "/v2.tandem"
	if r := run(t, nil, "--root", dev, "update", "install", url, "--ca-file", ca); r.code == 0 {
		t.Fatalf("install without a client certificate succeeded: %+v", r)
	}
	if r := run(t, nil, "--root", dev, "update", "install", url, "--ca-file", ca, "--client-cert", certFile, "--client-key", keyFile); r.code != 0 {
		t.Fatalf("install with a client certificate: %+v", r)
	}
}

// bundle create --spec: slot, tree and execute payloads, a key from the
// spec, paths relative to it; an unknown key is an error with line:column.
func TestBundleSpec(t *testing.T) {
	dir, image := bundleFixture(t)
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "etc/app.conf", Mode: 0o644, Size: 6, Typeflag: tar.TypeReg})
	tw.Write([]byte("x = 1\n"))
	tw.Close()
	os.WriteFile(filepath.Join(dir, "app.tar"), tarball.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "migrate.sh"), []byte("echo migrated\n"), 0o644)
	spec := `compatible = "tandem-sim"
version = "2.1.0"
min-version = "1.0.0"
keys = ["release.key"]

[[payload]]
name = "system"
file = "v2.img"
chunk-size = "16K"

[[payload]]
name = "apps"
kind = "tree"
file = "app.tar"

[[payload]]
name = "migrate"
kind = "execute"
file = "migrate.sh"
handler = ["/bin/sh", "-s"]
`
	specFile := filepath.Join(dir, "bundle.toml")
	os.WriteFile(specFile, []byte(spec), 0o644)
	out := filepath.Join(dir, "spec.tandem")
	if r := run(t, nil, "bundle", "create", "--spec", specFile, out); r.code != 0 {
		t.Fatalf("create --spec: %+v", r)
	}
	r := run(t, nil, "bundle", "inspect", out, "--json")
	var info BundleInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatal(err)
	}
	if info.Version != "2.1.0" || info.MinVersion != "1.0.0" || len(info.Signers) != 1 || len(info.Payloads) != 3 {
		t.Fatalf("inspect: %+v", info)
	}
	p := info.Payloads
	if p[0].Kind != "slot" || p[0].Target != "system" || p[0].ChunkAvg != 16<<10 || p[1].Kind != "tree" || p[2].Kind != "execute" || p[2].Handler[0] != "/bin/sh" {
		t.Fatalf("payloads: %+v", p)
	}
	extracted := filepath.Join(dir, "system.out")
	if r := run(t, nil, "bundle", "extract", out, "system", extracted, "--trust", filepath.Join(dir, "release.pub")); r.code != 0 || !bytes.Equal(readFile(t, extracted), readFile(t, image)) {
		t.Fatalf("extract: %+v", r)
	}
	os.WriteFile(specFile, []byte(spec+"colour = \"blue\"\n"), 0o644)
	if r := run(t, nil, "bundle", "create", "--spec", specFile, filepath.Join(dir, "bad.tandem")); r.code == 0 || !strings.Contains(r.stderr, "bundle.toml:") || !strings.Contains(r.stderr, "colour") {
		t.Fatalf("unknown key: %+v", r)
	}
}

// tandem slots index builds the cache a delta install would build on first need.
func TestSlotsIndex(t *testing.T) {
	_, image := bundleFixture(t)
	dev := newSim(t, "grub", "--image", image, "--slot-size", "1M")
	r := run(t, nil, "--root", dev, "slots", "index", "system-a")
	if r.code != 0 || !strings.Contains(r.stdout, "indexed slot system-a") {
		t.Fatalf("slots index: %+v", r)
	}
	if fi, err := os.Stat(filepath.Join(dev, "var/lib/tandem/index/system-a.scan.tidx")); err != nil || fi.Size() == 0 {
		t.Fatalf("index file: %v", err)
	}
	if r := run(t, nil, "--root", dev, "slots", "index", "nope"); r.code == 0 {
		t.Fatalf("index of an unknown slot: %+v", r)
	}
}

// A bundle of format version 1 is refused (bundle rejected) with a hint to
// make it again; one of format version 2 is still verified.
func TestBundleFormatVersion1(t *testing.T) {
	v2 := filepath.Join("..", "..", "testdata", "vectors", "v2-valid-signed.tandem")
	if r := run(t, nil, "bundle", "verify", v2, "--trust", filepath.Join("..", "..", "testdata", "vectors", "test-key.pub")); r.code != 0 {
		t.Errorf("verify of a format 2 bundle: exit %d, stderr %q", r.code, r.stderr)
	}
	v1 := filepath.Join("..", "..", "testdata", "vectors", "version-1.tandem")
	for _, args := range [][]string{{"bundle", "inspect", v1}, {"bundle", "verify", v1, "--trust", filepath.Join("..", "..", "testdata", "vectors", "test-key.pub")}} {
		r := run(t, nil, args...)
		if r.code != ExitBundle || !strings.Contains(r.stderr, "format version 1 (this tandem reads 2 and 3)") ||
			!strings.Contains(r.stderr, "\nhint: the bundle was made by an older tandem; re-create it") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}
