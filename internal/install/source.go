package install

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// HTTPOptions configure downloads: the connection (also for fleet adapters
// that fetch their own documents, see Client) and, for bundles, how ranges
// are fetched.
type HTTPOptions struct {
	CAFile   string   // PEM roots instead of the system's
	CertFile string   // client certificate (PEM)
	KeyFile  string   // its key (PEM)
	Headers  []string // extra "Name: value" headers

	// NoDelta reads a URL as one stream even when the server supports ranges.
	NoDelta bool
	// NoPatch does not look for a patch next to the bundle (chunk reuse only).
	NoPatch bool
	// DeltaGap: fetch the bytes between two needed chunks when the gap is at
	// most this many bytes, to save a request (0 = DefaultDeltaGap, negative = never).
	DeltaGap int64
	// MaxRequest bounds one range request (0 = 8 MiB).
	MaxRequest int64
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// openStream opens a path or "-" (stdin) as one stream (URLs are fetched:
// bsource.go).
func openStream(_ context.Context, o Options) (io.ReadCloser, error) {
	if o.Source == "-" {
		return io.NopCloser(o.Stdin), nil
	}
	return OpenFile(o.Source)
}

// OpenFile opens a bundle file (for an install here, or an upload to the
// local API). Only a regular file is a bundle source: a
// device node or a FIFO is never opened for reading (opening one can block
// or act), nor a directory (issue 11, hardening 5). The file is checked
// again after the open, without blocking, in case it was replaced.
func OpenFile(p string) (*os.File, error) {
	notRegular := func(fi os.FileInfo) error {
		return fmt.Errorf("bundle source %s is not a regular file (%s); give a bundle file, - or an http(s) URL", p, fi.Mode().Type())
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(fi)
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = notRegular(fi)
		}
		return nil, err
	}
	return f, nil
}

// TLSConfig returns the TLS settings of o: TLS 1.2 or newer, the roots of
// CAFile (the system's when empty) and the client certificate, if any.
func (o HTTPOptions) TLSConfig() (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificates", o.CAFile)
		}
		conf.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// httpClient returns a client with the TLS settings of o; it honours the
// proxy environment variables.
func httpClient(o HTTPOptions) (*http.Client, http.Header, error) {
	tlsConf, err := o.TLSConfig()
	if err != nil {
		return nil, nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone() // honours HTTP(S)_PROXY / NO_PROXY
	tr.TLSClientConfig = tlsConf
	tr.ResponseHeaderTimeout = 30 * time.Second
	headers := http.Header{}
	for _, h := range o.Headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, nil, fmt.Errorf("header %q: want \"Name: value\"", h)
		}
		headers.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return &http.Client{Transport: tr}, headers, nil
}
