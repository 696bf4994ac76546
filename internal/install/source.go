package install

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

// HTTPOptions configure downloads.
type HTTPOptions struct {
	CAFile   string   // PEM roots instead of the system's
	CertFile string   // client certificate (PEM)
	KeyFile  string   // its key (PEM)
	Headers  []string // extra "Name: value" headers
}

// openSource opens a path, "-" (stdin) or an http(s) URL as one stream.
func openSource(o Options) (io.ReadCloser, error) {
	switch {
	case o.Source == "-":
		return io.NopCloser(o.Stdin), nil
	case strings.HasPrefix(o.Source, "http://"), strings.HasPrefix(o.Source, "https://"):
		return openHTTP(o.Source, o.HTTP)
	}
	return os.Open(o.Source)
}

func openHTTP(url string, o HTTPOptions) (io.ReadCloser, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificates", o.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone() // honours HTTP(S)_PROXY / NO_PROXY
	tr.TLSClientConfig = tlsConf
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for _, h := range o.Headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("header %q: want \"Name: value\"", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: HTTP %s", url, resp.Status)
	}
	return resp.Body, nil
}
