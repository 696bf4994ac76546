package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/install"
)

// installWire is an install on the wire: the JSON body of an install from a
// URL, or the query parameters of an upload (same names).
type installWire struct {
	URL            string   `json:"url,omitempty"`
	Reboot         string   `json:"reboot,omitempty"`
	Group          string   `json:"group,omitempty"`
	BundleHash     string   `json:"bundleHash,omitempty"`
	AllowDowngrade bool     `json:"allowDowngrade,omitempty"`
	NoDelta        bool     `json:"noDelta,omitempty"`
	DeltaGap       int64    `json:"deltaGap,omitempty"`
	Headers        []string `json:"headers,omitempty"`
	// Root only: host files the server reads, and skipping verification.
	Trust    []string `json:"trust,omitempty"`
	Insecure bool     `json:"insecureSkipVerification,omitempty"`
	CAFile   string   `json:"caFile,omitempty"`
	CertFile string   `json:"clientCert,omitempty"`
	KeyFile  string   `json:"clientKey,omitempty"`
}

// Bounds of an install request's fields.
const (
	maxField   = 4096
	maxRepeats = 16
)

func toWire(r InstallRequest) installWire {
	o := r.Options
	w := installWire{Reboot: string(r.Reboot), Group: o.Group, BundleHash: o.Trust.BundleHash,
		AllowDowngrade: o.Policy.AllowDowngrade, NoDelta: o.HTTP.NoDelta, DeltaGap: o.HTTP.DeltaGap, Headers: o.HTTP.Headers,
		Trust: o.Trust.Files, Insecure: o.Trust.Insecure, CAFile: o.HTTP.CAFile, CertFile: o.HTTP.CertFile, KeyFile: o.HTTP.KeyFile}
	if isURL(o.Source) {
		w.URL = o.Source
	}
	return w
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// query is w (without URL) as an upload's query parameters.
func (w installWire) query() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("reboot", w.Reboot)
	set("group", w.Group)
	set("bundleHash", w.BundleHash)
	if w.AllowDowngrade {
		q.Set("allowDowngrade", "true")
	}
	if w.Insecure {
		q.Set("insecureSkipVerification", "true")
	}
	for _, t := range w.Trust {
		q.Add("trust", t)
	}
	return q
}

// parseInstall reads an install request: a JSON body with a URL, or an
// upload (any other content type) with its options in the query. It
// returns the request and how to name its source.
func parseInstall(r *http.Request, c Caller) (InstallRequest, string, error) {
	var w installWire
	upload := !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
	if upload {
		if err := w.fromQuery(r.URL.Query()); err != nil {
			return InstallRequest{}, "", err
		}
	} else {
		if err := decodeJSON(r, &w); err != nil {
			return InstallRequest{}, "", err
		}
		if !isURL(w.URL) {
			return InstallRequest{}, "", usage("url %q: give an http(s) URL, or upload the bundle as the body (application/octet-stream)", w.URL)
		}
	}
	if r.URL.RawQuery != "" && !upload {
		return InstallRequest{}, "", usage("an install from a URL takes its options in the JSON body, not the query")
	}
	if err := w.check(c); err != nil {
		return InstallRequest{}, "", err
	}
	req := InstallRequest{Reboot: install.Reboot(w.Reboot), Options: install.Options{
		Source: w.URL, Group: w.Group,
		Trust:  install.Trust{Files: w.Trust, BundleHash: w.BundleHash, Insecure: w.Insecure},
		Policy: install.Policy{AllowDowngrade: w.AllowDowngrade},
		HTTP: install.HTTPOptions{CAFile: w.CAFile, CertFile: w.CertFile, KeyFile: w.KeyFile, Headers: w.Headers,
			NoDelta: w.NoDelta, DeltaGap: w.DeltaGap},
	}}
	source := w.URL
	if upload {
		req.Options.Source, source = "-", "upload"
	}
	if u, err := url.Parse(source); err == nil && u.User != nil {
		u.User = nil
		source = u.String()
	}
	return req, source, nil
}

func (w *installWire) fromQuery(q url.Values) error {
	for k, v := range q {
		if len(v) > 1 && k != "trust" {
			return usage("query parameter %s given %d times", k, len(v))
		}
		if len(v) > maxRepeats {
			return usage("query parameter %s given %d times (at most %d)", k, len(v), maxRepeats)
		}
		var err error
		switch k {
		case "reboot":
			w.Reboot = v[0]
		case "group":
			w.Group = v[0]
		case "bundleHash":
			w.BundleHash = v[0]
		case "trust":
			w.Trust = v
		case "allowDowngrade":
			w.AllowDowngrade, err = strconv.ParseBool(v[0])
		case "insecureSkipVerification":
			w.Insecure, err = strconv.ParseBool(v[0])
		default:
			return usage("unknown query parameter %q; see docs/api.md", k)
		}
		if err != nil {
			return usage("query parameter %s: %q is not true or false", k, v[0])
		}
	}
	return nil
}

// check bounds w's fields and refuses root-only ones to other callers.
func (w *installWire) check(c Caller) error {
	fields := append([]string{w.URL, w.Reboot, w.Group, w.BundleHash, w.CAFile, w.CertFile, w.KeyFile}, append(w.Trust, w.Headers...)...)
	for _, f := range fields {
		if len(f) > maxField {
			return usage("a field of the install request is longer than %d bytes", maxField)
		}
	}
	if len(w.Trust) > maxRepeats || len(w.Headers) > maxRepeats {
		return usage("at most %d trust files and %d headers", maxRepeats, maxRepeats)
	}
	if w.Reboot != "" {
		if _, err := install.ParseReboot(w.Reboot); err != nil {
			return usage("reboot %v", err)
		}
	}
	if !c.Root && (len(w.Trust) > 0 || w.Insecure || w.CAFile != "" || w.CertFile != "" || w.KeyFile != "") {
		return &Error{Status: http.StatusForbidden, Kind: KindForbidden,
			Message: fmt.Sprintf("%s may not name trust files or TLS files, nor skip verification: only root may", c.name())}
	}
	return nil
}
