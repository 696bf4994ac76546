package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// nginxConf is the whole configuration of the test's nginx: everything it
// writes stays in the temporary prefix. %[1]s: user directive, %[2]s: prefix,
// %[3]d: port, %[4]s: document root.
const nginxConf = `%[1]s
worker_processes 1;
pid "%[2]s/nginx.pid";
error_log "%[2]s/error.log" info;
events { worker_connections 64; }
http {
	log_format tandem '$status $body_bytes_sent "$http_range" "$http_if_range"';
	access_log "%[2]s/access.log" tandem;
	client_body_temp_path "%[2]s/tmp/client_body";
	proxy_temp_path "%[2]s/tmp/proxy";
	fastcgi_temp_path "%[2]s/tmp/fastcgi";
	uwsgi_temp_path "%[2]s/tmp/uwsgi";
	scgi_temp_path "%[2]s/tmp/scgi";
	default_type application/octet-stream;
	sendfile on;
	server {
		listen 127.0.0.1:%[3]d;
		root "%[4]s";
		location /norange/ { max_ranges 0; }
	}
}
`

// StartNginx runs nginx serving root on a free local port until the test
// ends, and returns its base URL and the path of its access log.
func StartNginx(t testing.TB, root string) (base, accessLog string) {
	t.Helper()
	bin := NeedTool(t, "nginx")
	prefix := t.TempDir()
	if err := os.Mkdir(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A master started by root switches its workers to the "user"
	// directive's account (nobody by default), which could not read the
	// test's private temporary directories: keep the current account.
	userLine := ""
	if os.Geteuid() == 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatal(err)
		}
		userLine = fmt.Sprintf("user %s %s;", u.Username, g.Name)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, userLine, prefix, port, root), 0o644); err != nil {
		t.Fatal(err)
	}
	errorLog := filepath.Join(prefix, "error.log")
	// -e: the compiled-in error log is used until the configuration is read.
	// "daemon off" is given here only: repeating it in the file is an error.
	cmd := exec.Command(bin, "-p", prefix+"/", "-c", conf, "-e", errorLog, "-g", "daemon off;")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM: the master stops its workers and exits. If it hangs,
		// kill its process group (the master and its workers).
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(errorLog)
			t.Fatalf("nginx exited (%v): %s\n%s", err, out.Bytes(), log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(errorLog)
			t.Fatalf("nginx does not listen on %s: %v\n%s", addr, err, log)
		}
	}
	return "http://" + addr, filepath.Join(prefix, "access.log")
}
