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
	return os.Open(o.Source)
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
