package device_test

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tandem-ota/tandem/internal/device"
	"golang.org/x/sys/unix"
)

// nobody is the user the lock test runs its intruder as.
const nobody = 65534

// TestLockNotForOthers: the device lock and its directory are created for
// tandem's user alone, so another local user cannot open the lock and hold
// it (which would block commit, install and rollback); an existing lock that
// others could open, or that another user owns, is refused. The intruder
// runs as uid 65534, which needs root: the test is skipped otherwise.
// Issue 11, hardening 2.
func TestLockNotForOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user (uid 65534)")
	}
	root, open := newSim(t)
	// Every directory above the lock is open to others, as / and /run are.
	for p := root; p != filepath.Clean(os.TempDir()) && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lock := filepath.Join(root, device.LockFile)
	unlock, err := open().Lock()
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	for _, p := range []string{lock, filepath.Dir(lock)} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s: %v %v, want no permission for group and others", p, fi.Mode(), err)
		}
	}
	// Even in a directory others may enter (as tandem before the fix made
	// it), nobody cannot open the lock file.
	if err := os.Chmod(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := intruder(t, lock); err == nil {
		t.Fatalf("uid %d opened and locked %s: %s", nobody, lock, out)
	}
	if _, err := open().Lock(); err != nil {
		t.Fatalf("lock after the intruder: %v", err)
	}

	// A lock others can open is refused, and so is one another user owns.
	if err := os.Chmod(lock, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := open().Lock(); !errors.Is(err, device.ErrRefused) || !strings.Contains(err.Error(), "mode 0644") || !strings.Contains(err.Error(), lock) {
		t.Fatalf("lock of mode 0644: %v, want refused", err)
	}
	if err := os.Chmod(lock, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(lock, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if _, err := open().Lock(); !errors.Is(err, device.ErrRefused) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("lock owned by nobody: %v, want refused", err)
	}
	// A removed lock is recreated.
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if _, err := open().Lock(); err != nil {
		t.Fatalf("lock after removing the bad one: %v", err)
	}
	// A state file other users may change is refused, a new one is 0600.
	state := filepath.Join(root, "var/lib/tandem", device.StateFile)
	if err := open().SaveState(&device.State{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v, want mode 0600", fi.Mode(), err)
	}
	if err := os.Chmod(state, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := open().LoadState(); !errors.Is(err, device.ErrRefused) || !strings.Contains(err.Error(), "mode 0666") {
		t.Fatalf("state file of mode 0666: %v, want refused", err)
	}
}

// intruder runs this test binary as uid 65534 to open and flock lock.
func intruder(t *testing.T, lock string) ([]byte, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The test binary's directory is private: run a copy nobody can read.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "intruder.test")
	src, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(cp, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cp, "-test.run=^TestIntruderHelper$")
	cmd.Env = append(os.Environ(), "TANDEM_TEST_INTRUDE="+lock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return cmd.CombinedOutput()
}

// TestIntruderHelper is the intruder process of TestLockNotForOthers: it
// opens and flocks the lock named by TANDEM_TEST_INTRUDE and fails if it
// cannot.
func TestIntruderHelper(t *testing.T) {
	lock := os.Getenv("TANDEM_TEST_INTRUDE")
	if lock == "" {
		t.Skip("the intruder process of TestLockNotForOthers")
	}
	f, err := os.Open(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
}
