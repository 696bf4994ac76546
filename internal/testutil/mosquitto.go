package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Mosquitto is a real MQTT broker (Debian's mosquitto) a test runs on a free
// loopback port with its own configuration. Without persistence a restart
// loses every retained message, as a broker on a tmpfs does; with it (as
// thin-edge.io configures its broker) retained messages survive a restart.
type Mosquitto struct {
	Addr string // 127.0.0.1:port
	t    testing.TB
	bin  string
	conf string
	log  *bytes.Buffer
	cmd  *exec.Cmd
	done chan struct{}
}

// StartMosquitto starts a broker without persistence that runs until the
// test ends.
func StartMosquitto(t testing.TB) *Mosquitto {
	t.Helper()
	return startMosquitto(t, false)
}

// StartMosquittoPersistent starts a broker that keeps its retained messages
// across restarts (saved when it stops).
func StartMosquittoPersistent(t testing.TB) *Mosquitto {
	t.Helper()
	return startMosquitto(t, true)
}

func startMosquitto(t testing.TB, persist bool) *Mosquitto {
	m := &Mosquitto{t: t, bin: NeedTool(t, "mosquitto")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.Addr = l.Addr().String()
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	// Started by root, mosquitto switches to the "mosquitto" account unless
	// told to stay: keep the current one.
	userLine := ""
	if os.Geteuid() == 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		userLine = "user " + u.Username + "\n"
	}
	dir := t.TempDir()
	m.conf = filepath.Join(dir, "mosquitto.conf")
	persistence := "persistence false\n"
	if persist {
		persistence = "persistence true\npersistence_location " + dir + "/\n"
	}
	conf := fmt.Sprintf("%slistener %d 127.0.0.1\nallow_anonymous true\n%slog_dest stderr\nlog_type error\nlog_type warning\n", userLine, port, persistence)
	if err := os.WriteFile(m.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

// Start starts the broker (again, on the same port) and waits until it
// accepts connections.
func (m *Mosquitto) Start() {
	m.t.Helper()
	m.log = &bytes.Buffer{}
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("mosquitto: %v", err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.Addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-m.done:
			m.t.Fatalf("mosquitto exited: %s", m.log)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto does not listen on %s: %v\n%s", m.Addr, err, m.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the broker (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (m *Mosquitto) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}
