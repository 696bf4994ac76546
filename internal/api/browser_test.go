package api

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/tandem-ota/tandem/internal/sim"
)

// screenshotDir is where the browser test keeps its screenshots (a test
// artefact): $TANDEM_SCREENSHOTS, else tandem-screenshots in the temporary
// directory.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("TANDEM_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tandem-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// page drives one headless Chromium tab.
type page struct {
	t    *testing.T
	ctx  context.Context
	shot string
}

// newPage starts Debian's chromium (scripts/install-deps.sh installs it) in
// a phone-sized window. Without it the test fails in CI and skips elsewhere.
func newPage(t *testing.T) *page {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is missing: run scripts/install-deps.sh")
		}
		t.Skip("chromium is missing: run scripts/install-deps.sh")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.WindowSize(412, 915),
		chromedp.Flag("ignore-certificate-errors", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses to run as root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	p := &page{t: t, ctx: ctx, shot: screenshotDir(t)}
	p.do(chromedp.EmulateViewport(412, 915))
	return p
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

func (p *page) text(id string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](fmt.Sprintf("document.getElementById(%q).textContent", id)))
	if err != nil {
		p.t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

// waitText waits until #id's text contains want.
func (p *page) waitText(id, want string) string {
	p.t.Helper()
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = p.text(id); strings.Contains(got, want) {
			return got
		}
	}
	p.screenshot("failed-" + id)
	p.t.Fatalf("#%s says %q, want %q", id, got, want)
	return ""
}

func (p *page) screenshot(name string) {
	p.t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	f := filepath.Join(p.shot, name+".png")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", f)
}

// upload installs file through the page and returns the message it shows.
func (p *page) upload(file, want string) string {
	p.t.Helper()
	p.do(chromedp.SetUploadFiles(chromedp.ID("bundle"), []string{file}), chromedp.Click(chromedp.ID("install")))
	return p.waitText("message", want)
}

// The field-service page in a real browser against a simulated device: a
// wrong password is refused; log in; a tampered and an unsigned bundle are
// refused with a clear error and leave the device untouched; a signed
// bundle's progress reaches 100 %; reboot into the trial, commit, and the
// page shows the new version. Screenshots of each screen are kept.
func TestBrowser(t *testing.T) {
	p := newPage(t)
	fx := newWebFixture(t)
	fx.setPassword(t, testPassword)
	dir := t.TempDir()
	files := map[string][]byte{"v2.tandem": fx.good, "tampered.tandem": fx.tampered, "unsigned.tandem": fx.untrust}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "https://" + fx.web.String() + "/"

	p.do(chromedp.Navigate(base), chromedp.WaitVisible(chromedp.ID("password")))
	p.screenshot("1-login")
	p.do(chromedp.SendKeys(chromedp.ID("password"), "not the password"), chromedp.Click(chromedp.ID("login-button")))
	p.waitText("message", "wrong password")
	p.screenshot("2-wrong-password")
	if visible := p.text("device"); strings.Contains(visible, "Running") && !p.hidden("device") {
		t.Fatal("the device is shown after a wrong password")
	}

	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.getElementById("password").value = ""`)); err != nil {
		t.Fatal(err)
	}
	p.do(chromedp.SendKeys(chromedp.ID("password"), testPassword),
		chromedp.Click(chromedp.ID("login-button")), chromedp.WaitVisible(chromedp.ID("device")))
	p.waitText("running", "a (1.0.0)")
	p.screenshot("3-device")

	before := fx.bootConfig(t)
	msg := p.upload(filepath.Join(dir, "tampered.tandem"), "Install failed")
	if !strings.Contains(msg, "chunk") && !strings.Contains(msg, "digest") {
		t.Errorf("tampered bundle: %q does not say what is wrong", msg)
	}
	msg = p.upload(filepath.Join(dir, "unsigned.tandem"), "Install failed")
	if !strings.Contains(msg, "signature") && !strings.Contains(msg, "trusted") {
		t.Errorf("unsigned bundle: %q does not say what is wrong", msg)
	}
	p.screenshot("4-rejected")
	if after := fx.bootConfig(t); !bytes.Equal(before, after) {
		t.Error("a rejected bundle changed the boot configuration")
	}
	if info := fx.info(t); info.Boot.Trial != nil || info.Boot.DefaultGroup != "a" {
		t.Errorf("a rejected bundle changed the device: %+v", info.Boot)
	}

	p.upload(filepath.Join(dir, "v2.tandem"), "Installed 2.0.0")
	p.waitText("percent", "100 %")
	p.waitText("install-status", "Installed version 2.0.0 into group b")
	p.screenshot("5-installed")

	p.do(chromedp.Click(chromedp.ID("reboot-spare")))
	p.waitText("message", "Rebooting into group b on trial")
	if g, _, err := sim.Reboot(fx.root, false); err != nil || g != "b" { // the simulated device boots
		t.Fatalf("sim reboot: %s %v", g, err)
	}
	p.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("device")))
	p.waitText("trial", "running on trial")
	p.waitText("running", "b (2.0.0)")
	p.screenshot("6-trial")

	p.do(chromedp.Click(chromedp.ID("commit")))
	p.waitText("message", "Committed: group b is now the default")
	p.waitText("default", "b (2.0.0)")
	p.waitText("last", "committed")
	p.screenshot("7-committed")
	if info := fx.info(t); info.Boot.DefaultGroup != "b" || info.Boot.Groups["b"].Version != "2.0.0" {
		t.Errorf("after commit: %+v", info.Boot)
	}
}

func (p *page) hidden(id string) bool {
	p.t.Helper()
	h, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](fmt.Sprintf("document.getElementById(%q).hidden", id)))
	if err != nil {
		p.t.Fatal(err)
	}
	return h
}
