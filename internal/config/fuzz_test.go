package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzParse checks, for any document, that Parse does not panic, that every
// error is one line starting with the file name and wrapping ErrInvalid, and
// that a Config it accepts marshals back to a document that parses to the
// same Config. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(testFile, data)
		if err != nil {
			checkParseError(t, data, err)
			return
		}
		checkRoundTrip(t, cfg)
	})
}

// checkRoundTrip checks that cfg marshals to a document that parses to an
// equal Config (File aside).
func checkRoundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	out, err := toml.Marshal(cfg)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	again, err := Parse(cfg.File, out)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Fatalf("round trip changed the config\nfirst:  %+v\nsecond: %+v\nmarshalled:\n%s", cfg, again, out)
	}
}

func checkParseError(t *testing.T, data []byte, err error) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("error is not one line: %q", msg)
	}
	if !strings.HasPrefix(msg, testFile+":") {
		t.Fatalf("error does not start with the file name: %q", msg)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error does not wrap ErrInvalid: %q", msg)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error is not an *Error: %q", msg)
	}
	if n := bytes.Count(data, []byte("\n")) + 1; ce.Line < 0 || ce.Line > n || ce.Line > 0 && ce.Column < 1 {
		t.Fatalf("error place %d:%d is outside the document (%d lines): %q", ce.Line, ce.Column, n, msg)
	}
}
