// Package qemu runs a guest headless under QEMU for tandem's real-boot tests
// and drives its serial console: send a line, wait for a marker with a
// timeout, run a command in the guest's command loop. Every byte the guest
// prints is also written to a log file, which failures quote. Kill is a power
// cut (SIGKILL: the guest's unwritten page cache is lost, what reached the
// virtual disk stays); Start again on the same disk is the next power-on.
package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options start one VM.
type Options struct {
	Binary string   // e.g. qemu-system-x86_64
	Args   []string // machine, firmware, disks; the serial console must be stdio
	Log    string   // file that receives the console output (appended)
	// Scale multiplies every timeout (TANDEM_E2E_TIMEOUT_SCALE, for slow hosts).
	Scale float64
}

// VM is a running QEMU process.
type VM struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *os.File
	scale float64

	mu     sync.Mutex
	cond   *sync.Cond
	out    []byte // everything printed since Start
	cursor int    // Expect searches from here
	exited bool
	err    error
}

// Start starts QEMU with the console on stdin/stdout.
func Start(o Options) (*VM, error) {
	log, err := os.OpenFile(o.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "\n===== %s %s\n", o.Binary, strings.Join(o.Args, " "))
	cmd := exec.Command(o.Binary, o.Args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		log.Close()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	v := &VM{cmd: cmd, stdin: stdin, log: log, scale: o.Scale}
	if v.scale <= 0 {
		v.scale = 1
	}
	v.cond = sync.NewCond(&v.mu)
	go v.read(stdout)
	return v, nil
}

func (v *VM) read(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			v.log.Write(buf[:n])
			v.mu.Lock()
			v.out = append(v.out, buf[:n]...)
			v.cond.Broadcast()
			v.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	err := v.cmd.Wait()
	v.mu.Lock()
	v.exited, v.err = true, err
	v.cond.Broadcast()
	v.mu.Unlock()
}

// ErrTimeout is returned when a marker does not come in time.
var ErrTimeout = errors.New("timed out")

// Expect waits until re matches the console output after the previous
// match, and returns the submatches. It fails after timeout (scaled), or when
// QEMU exits, with the tail of the console in the error.
func (v *VM) Expect(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	timeout = time.Duration(float64(timeout) * v.scale)
	deadline := time.Now().Add(timeout)
	defer v.wakeAfter(timeout).Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		text := string(v.out[v.cursor:])
		if loc := re.FindStringSubmatchIndex(text); loc != nil {
			m := make([]string, len(loc)/2)
			for i := range m {
				if loc[2*i] >= 0 {
					m[i] = text[loc[2*i]:loc[2*i+1]]
				}
			}
			v.cursor += loc[1]
			return m, nil
		}
		if v.exited {
			return nil, fmt.Errorf("qemu exited (%v) before %q appeared; console tail:\n%s", v.err, re, tail(v.out, 3000))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w after %s waiting for %q; console tail:\n%s", ErrTimeout, timeout, re, tail(v.out, 3000))
		}
		v.cond.Wait()
	}
}

// ExpectString waits for the literal s.
func (v *VM) ExpectString(s string, timeout time.Duration) error {
	_, err := v.Expect(regexp.MustCompile(regexp.QuoteMeta(s)), timeout)
	return err
}

// Send writes line and a newline to the console.
func (v *VM) Send(line string) error {
	_, err := io.WriteString(v.stdin, line+"\n")
	return err
}

var rcRe = regexp.MustCompile(`TANDEM-E2E rc=(\d+)\r?\n`)

// Run runs cmd in the guest's command loop (image.MarkerRC after each
// command) and returns what it printed and its exit status.
func (v *VM) Run(cmd string, timeout time.Duration) (string, int, error) {
	v.mu.Lock()
	start := len(v.out)
	v.cursor = start
	v.mu.Unlock()
	if err := v.Send(cmd); err != nil {
		return "", -1, err
	}
	m, err := v.Expect(rcRe, timeout)
	if err != nil {
		return "", -1, fmt.Errorf("%s: %w", cmd, err)
	}
	v.mu.Lock()
	text := string(v.out[start:v.cursor])
	v.mu.Unlock()
	text = strings.ReplaceAll(strings.TrimSuffix(text, m[0]), "\r", "")
	rc, _ := strconv.Atoi(m[1])
	return text, rc, nil
}

// Output returns the whole console output so far.
func (v *VM) Output() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return string(v.out)
}

// Kill cuts the power: SIGKILL, and wait for the process to go.
func (v *VM) Kill() {
	_ = v.cmd.Process.Kill()
	v.Wait(time.Minute)
}

// wakeAfter wakes the waiters on v.cond after d, so that they see their
// deadline pass; the caller stops the returned timer when done.
func (v *VM) wakeAfter(d time.Duration) *time.Timer {
	return time.AfterFunc(d, func() {
		v.mu.Lock()
		v.cond.Broadcast()
		v.mu.Unlock()
	})
}

// Wait waits up to timeout for QEMU to exit by itself and reports whether it did.
func (v *VM) Wait(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	defer v.wakeAfter(timeout).Stop()
	v.mu.Lock()
	defer v.mu.Unlock()
	for !v.exited && time.Now().Before(deadline) {
		v.cond.Wait()
	}
	if v.exited {
		v.log.Close()
	}
	return v.exited
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.ReplaceAll(b, []byte("\r"), nil))
}

// X86 returns the arguments of an x86-64 q35 machine under TCG with OVMF
// (code read-only, vars: a per-VM copy so EFI variables persist across
// reboots), one virtio disk, a virtio NIC on QEMU's user-mode network, the
// serial console on stdio, and the i6300esb watchdog wired to reset the
// machine. memMiB 0 means 512.
func X86(ovmfCode, ovmfVars, disk string, memMiB int) []string {
	if memMiB == 0 {
		memMiB = 512
	}
	return []string{
		"-machine", "q35,accel=tcg", "-smp", "1", "-m", strconv.Itoa(memMiB),
		"-nodefaults", "-display", "none", "-monitor", "none", "-serial", "stdio",
		// User-mode network: the guest is 10.0.2.15 and reaches the host's
		// 127.0.0.1 as 10.0.2.2 (bundles over HTTP).
		"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + ovmfVars,
		// bootindex: the firmware boots the disk first, never the network.
		"-drive", "if=none,id=disk0,format=raw,cache=unsafe,file=" + disk,
		"-device", "virtio-blk-pci,drive=disk0,bootindex=0",
		"-device", "i6300esb", "-action", "watchdog=reset",
	}
}
