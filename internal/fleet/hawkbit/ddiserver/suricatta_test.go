package ddiserver_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-ota/tandem/internal/fleet/hawkbit/ddiserver"
	"github.com/tandem-ota/tandem/internal/testutil"
)

// cpioNewc writes files (name, data) as a cpio "newc" archive, the
// container of an SWUpdate .swu.
func cpioNewc(files [][2]string) []byte {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	add := func(ino int, name string, mode int, data string) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 1700000000, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name)
		b.WriteByte(0)
		pad()
		b.WriteString(data)
		pad()
	}
	for i, f := range files {
		add(i+1, f[0], 0o100644, f[1])
	}
	add(0, "TRAILER!!!", 0, "")
	return b.Bytes()
}

// makeSWU builds a signed .swu that writes payload to out: a self-signed
// certificate (returned as its PEM file) signs sw-description with CMS, as
// Debian's swupdate (built for signed images) requires.
func makeSWU(t *testing.T, dir, out string, payload []byte) (swu []byte, cert string) {
	t.Helper()
	testutil.NeedTool(t, "openssl")
	sum := sha256.Sum256(payload)
	desc := fmt.Sprintf(`software =
{
	version = "2.0.0";
	description = "tandem DDI server test";
	hardware-compatibility: [ "1.0" ];
	files: (
		{
			filename = "payload.img";
			path = "%s";
			sha256 = "%s";
		}
	);
}
`, out, hex.EncodeToString(sum[:]))
	descPath := filepath.Join(dir, "sw-description")
	if err := os.WriteFile(descPath, []byte(desc), 0o644); err != nil {
		t.Fatal(err)
	}
	key, cert := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=tandem test signer",
		"-addext", "extendedKeyUsage=emailProtection", "-keyout", key, "-out", cert)
	sig := filepath.Join(dir, "sw-description.sig")
	run("cms", "-sign", "-in", descPath, "-out", sig, "-signer", cert, "-inkey", key, "-outform", "DER", "-nosmimecap", "-binary")
	sigData, err := os.ReadFile(sig)
	if err != nil {
		t.Fatal(err)
	}
	return cpioNewc([][2]string{{"sw-description", desc}, {"sw-description.sig", string(sigData)}, {"payload.img", string(payload)}}), cert
}

// TestSuricatta runs Debian's SWUpdate hawkBit client (suricatta) against
// the server: the real client's poll, deploymentBase request, artifact
// download and feedback must reach it and be understood, so that the
// server tandem's tests use speaks hawkBit and not a private dialect.
func TestSuricatta(t *testing.T) {
	bin := testutil.NeedTool(t, "swupdate")
	dir := t.TempDir()
	out := filepath.Join(dir, "installed.img")
	payload := bytes.Repeat([]byte("tandem-ddi "), 1000)
	swu, cert := makeSWU(t, dir, out, payload)

	var logMu sync.Mutex
	var serverLog []string
	srv := ddiserver.New(t, ddiserver.Options{TargetToken: "suricatta-token", Log: func(s string) {
		logMu.Lock()
		serverLog = append(serverLog, s)
		logMu.Unlock()
	}})
	id := srv.Add(ddiserver.Action{Controller: "swu-dev", Version: "2.0.0",
		Artifacts: []ddiserver.Artifact{{Filename: "update.swu", Data: swu}}})

	// run runs swupdate with extra suricatta arguments until done says so
	// (or 45 s passed) and returns its output.
	run := func(extra string, done func() bool) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-l", "5", "-k", cert, "-H", "tandem:1.0", "-m", "-M",
			"-u", fmt.Sprintf("-t %s -u %s -i swu-dev -p 1 -k suricatta-token -r 1 -w 1 %s", srv.Tenant(), srv.URL, extra))
		cmd.Dir = dir
		// A private TMPDIR: swupdate puts its control sockets there (default
		// /tmp/sockinstctrl), and another swupdate — a packaged service or a
		// concurrent test run — must not receive this one's download.
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		// swupdate forks helpers that inherit the output pipe: cancel kills the
		// whole process group, and Wait stops waiting for the pipe after 5 s.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		deadline := time.After(45 * time.Second)
	wait:
		for !done() {
			select {
			case <-exited:
				break wait
			case <-deadline:
				break wait
			case <-time.After(100 * time.Millisecond):
			}
		}
		cancel()
		<-exited
		return out.String()
	}
	// First start: suricatta polls, reads the action, downloads and
	// installs the .swu and says so in proceeding feedback; it then waits
	// for the reboot that would activate the update (the real client keeps
	// that state in the boot loader's environment, which this test has not).
	installed := func() bool {
		for _, f := range srv.Feedbacks(id) {
			for _, d := range f.Details {
				if strings.Contains(d, "All Chunks Installed") {
					return true
				}
			}
		}
		return false
	}
	out1 := run("", installed)
	// Second start, as after the reboot: -c 2 confirms the update.
	_, closed := srv.Result(id)
	out2 := run("-c 2", func() bool { _, ok := srv.Result(id); return ok })
	defer func() {
		if t.Failed() || testing.Verbose() {
			logMu.Lock()
			t.Logf("server log:\n%s", strings.Join(serverLog, "\n"))
			logMu.Unlock()
			t.Logf("swupdate output (first start):\n%s\nswupdate output (-c 2):\n%s", out1, out2)
		}
	}()
	if closed {
		t.Errorf("suricatta closed the action before it was confirmed")
	}

	var polled, deployment, artifact, feedback bool
	for _, r := range srv.Requests() {
		switch {
		case r.Method == "GET" && strings.HasSuffix(r.Path, "/controller/v1/swu-dev") && r.Status == 200:
			polled = true
		case r.Method == "GET" && strings.HasSuffix(r.Path, "/deploymentBase/"+id) && r.Status == 200:
			deployment = true
		case r.Method == "GET" && strings.HasSuffix(r.Path, "/artifacts/update.swu") && (r.Status == 200 || r.Status == 206):
			artifact = true
		case r.Method == "POST" && strings.HasSuffix(r.Path, "/deploymentBase/"+id+"/feedback") && r.Status == 200:
			feedback = true
		}
		if r.Header.Get("Authorization") != "TargetToken suricatta-token" {
			t.Errorf("%s %s without the target token (%q)", r.Method, r.Path, r.Header.Get("Authorization"))
		}
	}
	if !polled || !deployment || !artifact || !feedback {
		t.Fatalf("requests of suricatta reached the server: poll %v, deploymentBase %v, artifact %v, feedback %v", polled, deployment, artifact, feedback)
	}
	res, ok := srv.Result(id)
	if !ok {
		t.Fatalf("suricatta sent no closing feedback; feedbacks: %+v", srv.Feedbacks(id))
	}
	if !res.Success {
		t.Fatalf("suricatta reported failure: %v", res.Details)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("suricatta did not install the artifact into %s: %v", out, err)
	}
}
