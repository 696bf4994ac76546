package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary play a client of another user: with
// TANDEM_API_PEER_SOCKET set it calls the paths of TANDEM_API_PEER_CALLS
// ("METHOD /path" separated by ";") and prints each answer's status.
func TestMain(m *testing.M) {
	if socket := os.Getenv("TANDEM_API_PEER_SOCKET"); socket != "" {
		os.Exit(peerClient(socket, os.Getenv("TANDEM_API_PEER_CALLS")))
	}
	os.Exit(m.Run())
}

func peerClient(socket, calls string) int {
	c := NewClient(socket)
	for _, call := range strings.Split(calls, ";") {
		method, path, _ := strings.Cut(call, " ")
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("{}")
		}
		req, _ := http.NewRequest(method, "http://tandem"+path, body)
		req.Header.Set("Content-Type", "application/json")
		if strings.Contains(path, "?") {
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		resp.Body.Close()
		fmt.Printf("%s %d\n", call, resp.StatusCode)
	}
	return 0
}

// Who may call what, decided per call from SO_PEERCRED and SO_PEERGROUPS:
// real processes of an unprivileged user (uid 65534) with and without the
// configured groups, started by the test (as root) with other credentials.
func TestPeerCredentials(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root: this test must run there")
		}
		t.Skip("needs root to start processes of another user (CI runs it)")
	}
	const readGID, changeGID, nobody = 4242, 4343, 65534
	fx := newFixture(t, ServeOptions{ReadGroups: []string{fmt.Sprint(readGID)}, ChangeGroups: []string{fmt.Sprint(changeGID)}})
	// The other user must reach the socket and run a copy of this binary.
	for p := fx.socket; p != "/" && p != "/tmp"; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			if err := os.Chmod(p, fi.Mode().Perm()|0o055); err != nil {
				t.Fatal(err)
			}
		}
	}
	exe := filepath.Join(filepath.Dir(filepath.Dir(fx.root)), "api.test")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := "GET /v1/info;GET /v1/last;POST /v1/commit;POST /v1/install"
	for _, c := range []struct {
		name   string
		groups []uint32
		want   string
	}{
		{"no group", nil, "GET /v1/info 403;GET /v1/last 403;POST /v1/commit 403;POST /v1/install 403"},
		{"read group", []uint32{readGID}, "GET /v1/info 200;GET /v1/last 200;POST /v1/commit 403;POST /v1/install 403"},
		// A change caller: commit is "nothing to commit" (200); the install names no URL (400).
		{"change group", []uint32{7, changeGID}, "GET /v1/info 200;GET /v1/last 200;POST /v1/commit 200;POST /v1/install 400"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(exe)
			cmd.Env = []string{"TANDEM_API_PEER_SOCKET=" + fx.socket, "TANDEM_API_PEER_CALLS=" + calls}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: c.groups}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("client as uid %d: %v\n%s", nobody, err, out)
			}
			if got := strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", ";"); got != c.want {
				t.Errorf("as uid %d with groups %v:\n got %s\nwant %s", nobody, c.groups, got, c.want)
			}
		})
	}
	// The primary group counts too, and a root-only install option is refused to a change member.
	cmd := exec.Command(exe)
	cmd.Env = []string{"TANDEM_API_PEER_SOCKET=" + fx.socket, "TANDEM_API_PEER_CALLS=POST /v1/install?insecureSkipVerification=true"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: changeGID}}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), " 403") {
		t.Errorf("insecure install by a change member: %v %s, want 403", err, out)
	}
	if info := fx.info(t); info.Boot.Groups["b"].Incomplete != nil || info.Boot.DefaultGroup != "a" {
		t.Errorf("refused calls changed the device: %+v", info.Boot)
	}
}

// Access.Caller, by table.
func TestAccessCaller(t *testing.T) {
	a := Access{ReadGroups: []uint32{10}, ChangeGroups: []uint32{20}}
	self := uint32(os.Geteuid())
	for _, c := range []struct {
		p                  Peer
		read, change, root bool
	}{
		{Peer{UID: 0, GID: 0}, true, true, true},
		{Peer{UID: self, GID: 99}, true, true, true},
		{Peer{UID: 1000, GID: 1000}, false, false, false},
		{Peer{UID: 1000, GID: 10}, true, false, false},
		{Peer{UID: 1000, GID: 1000, Groups: []uint32{5, 10}}, true, false, false},
		{Peer{UID: 1000, GID: 1000, Groups: []uint32{20}}, true, true, false},
	} {
		if self == 1000 {
			t.Skip("the test runs as uid 1000")
		}
		got := a.Caller(c.p)
		if got.Read != c.read || got.Change != c.change || got.Root != c.root {
			t.Errorf("%+v: %+v, want read %v change %v root %v", c.p, got, c.read, c.change, c.root)
		}
	}
}

// A connection that is not a Unix socket has no credentials: no rights.
func TestPeerOfTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := PeerOf(c); err == nil {
		t.Fatal("PeerOf a TCP connection did not fail")
	}
	got := callerOf(Access{}.ConnContext(context.Background(), c))
	if got.Read || got.Change || got.Root {
		t.Errorf("caller %+v has rights", got)
	}
}
