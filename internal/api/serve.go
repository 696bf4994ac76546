package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// ServeOptions configure `tandem serve`: the socket and who may call it,
// and the web page (off unless Listen is set).
type ServeOptions struct {
	Root        string // root prefix of the device
	Socket      string // device path of the socket (default SocketPath)
	SocketGroup string // group of the socket file ("" = the server's)
	SocketMode  string // octal mode of the socket file (default 0666: SO_PEERCRED decides)
	ReadGroups  []string
	// ChangeGroups may also change the device; root always may.
	ChangeGroups []string
	// Listen is the web page's TCP address ("" = no web page); it needs
	// TLSCert and TLSKey.
	Listen, TLSCert, TLSKey string

	Local Local
	Log   io.Writer // log lines (text); nil = os.Stderr
	// Listening, when set, is told the addresses once the server listens
	// (web is nil without Listen).
	Listening func(socket, web net.Addr)
}

// Flags adds the options' flags to fs.
func (o *ServeOptions) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Socket, "socket", SocketPath, "device path of the API's Unix socket")
	fs.StringVar(&o.SocketGroup, "socket-group", "", "group of the socket file (name or number)")
	fs.StringVar(&o.SocketMode, "socket-mode", "0666", "mode of the socket file (octal); who may do what is decided per call from the caller's credentials")
	fs.StringArrayVar(&o.ReadGroups, "read-group", nil, "group whose members may read (info, events, last outcome); repeatable")
	fs.StringArrayVar(&o.ChangeGroups, "change-group", nil, "group whose members may also install, reboot, commit, mark bad, reset; repeatable")
	fs.StringVar(&o.Listen, "listen", "", "serve the field-service web page over TLS on this address (off by default), e.g. 0.0.0.0:8443")
	fs.StringVar(&o.TLSCert, "tls-cert", "", "the web page's TLS certificate (PEM, with --listen)")
	fs.StringVar(&o.TLSKey, "tls-key", "", "the key of --tls-cert (PEM)")
}

// Check checks the options as a command line gives them (errors name the flag).
func (o *ServeOptions) Check() error {
	if o.Listen != "" && (o.TLSCert == "" || o.TLSKey == "") {
		return errors.New("--listen needs --tls-cert and --tls-key: the web page is served over TLS only")
	}
	if o.Listen == "" && (o.TLSCert != "" || o.TLSKey != "") {
		return errors.New("--tls-cert and --tls-key go with --listen")
	}
	if _, err := o.mode(); err != nil {
		return err
	}
	_, err := o.access()
	return err
}

func (o *ServeOptions) mode() (os.FileMode, error) {
	if o.SocketMode == "" {
		return 0o666, nil
	}
	m, err := strconv.ParseUint(o.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("--socket-mode %q: want an octal mode such as 0660", o.SocketMode)
	}
	return os.FileMode(m), nil
}

func (o *ServeOptions) access() (Access, error) {
	var a Access
	for _, g := range o.ReadGroups {
		gid, err := LookupGroup(g)
		if err != nil {
			return a, fmt.Errorf("--read-group: %w", err)
		}
		a.ReadGroups = append(a.ReadGroups, gid)
	}
	for _, g := range o.ChangeGroups {
		gid, err := LookupGroup(g)
		if err != nil {
			return a, fmt.Errorf("--change-group: %w", err)
		}
		a.ChangeGroups = append(a.ChangeGroups, gid)
	}
	return a, nil
}

// Serve runs the API on its socket (or the one systemd passed, socket
// activation) and, with Listen, the web page, until ctx ends.
func Serve(ctx context.Context, o ServeOptions) error {
	if err := o.Check(); err != nil {
		return err
	}
	access, _ := o.access()
	w := o.Log
	if w == nil {
		w = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(w, nil))
	ln, err := o.listenUnix()
	if err != nil {
		return err
	}
	srv := NewServer(o.Local, log)
	servers := []*http.Server{{Handler: srv.Handler(), ConnContext: access.ConnContext, ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	listeners := []net.Listener{ln}
	log.Info("API listening", "socket", ln.Addr().String())
	if o.Listen != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("web page TLS certificate: %w", err)
		}
		wl, err := net.Listen("tcp", o.Listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("web page: %w", err)
		}
		tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		listeners = append(listeners, tls.NewListener(wl, tlsConf))
		servers = append(servers, &http.Server{Handler: NewWeb(srv).Handler(), ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
		log.Info("web page listening", "url", "https://"+wl.Addr().String()+"/")
	}
	if o.Listening != nil {
		var web net.Addr
		if len(listeners) > 1 {
			web = listeners[1].Addr()
		}
		o.Listening(ln.Addr(), web)
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, s := range servers {
		_ = s.Shutdown(shut)
		listeners[i].Close() // in case Serve had not begun (it unlinks the socket)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// listenUnix returns systemd's socket (LISTEN_FDS) or listens on the
// socket path, replacing a stale socket that no server answers on, with
// the configured group and mode; the directory is made searchable.
func (o *ServeOptions) listenUnix() (net.Listener, error) {
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") == "1" {
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		return net.FileListener(os.NewFile(3, "systemd socket"))
	}
	name := o.Socket
	if name == "" {
		name = SocketPath
	}
	p := rootfs.Join(o.Root, name)
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	// The lock's directory may have been made 0700: callers must reach the socket.
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o011 != 0o011 {
		if err := os.Chmod(dir, fi.Mode().Perm()|0o011); err != nil {
			return nil, fmt.Errorf("API socket directory: %w", err)
		}
	}
	if fi, err := os.Lstat(p); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("API socket %s exists and is not a socket; remove it", p)
		}
		if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another server answers on %s", p)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("API socket %s: %w", p, err)
		}
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("remove the stale API socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("API socket: %w", err)
	}
	mode, _ := o.mode()
	if o.SocketGroup != "" {
		gid, err := LookupGroup(o.SocketGroup)
		if err == nil {
			err = os.Chown(p, -1, int(gid))
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("--socket-group: %w", err)
		}
	}
	if err := os.Chmod(p, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("API socket: %w", err)
	}
	return ln, nil
}
