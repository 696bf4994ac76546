package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalid is wrapped by every error that reports a configuration that
// cannot be used: TOML syntax, unknown keys, wrong types, failed validation,
// oversize file. Errors that only say the file could not be read (missing
// file, permissions) do not wrap it.
var ErrInvalid = errors.New("invalid configuration")

// HintError is implemented by errors that carry an actionable hint, to be
// shown on its own line after the one-line error. Use Hint to get it.
type HintError interface {
	error
	Hint() string
}

// Hint returns the hint carried by err or by an error it wraps, or "".
func Hint(err error) string {
	var h HintError
	if errors.As(err, &h) {
		return h.Hint()
	}
	return ""
}

// Error is a problem with a configuration file. Its message is a single line:
//
//	<file>:<line>:<column>: <what is wrong>
//
// or, when the problem has no place in the file (a missing key or table, an
// unreadable file):
//
//	<file>: <what is wrong>
//
// Lines and columns count from 1; columns count bytes.
type Error struct {
	File   string
	Line   int // 0 when the problem has no place in the file
	Column int
	Msg    string

	hint string
	errs []error // wrapped: ErrInvalid and/or the underlying error
}

// Error returns the one-line message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Column))
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return oneLine(b.String())
}

// Hint returns an actionable suggestion, or "" when there is none.
func (e *Error) Hint() string { return oneLine(e.hint) }

// Unwrap returns the wrapped errors: ErrInvalid for configuration problems,
// and the underlying error (*fs.PathError, go-toml's *DecodeError) if any.
func (e *Error) Unwrap() []error { return e.errs }

// oneLine escapes line breaks, other control characters and invalid UTF-8,
// so that a message stays on one line and cannot drive a terminal, whatever
// the file name, a key or an underlying error contains.
func oneLine(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r == '\n' || r == '\r' || unsafeRune(r) {
			return true
		}
	}
	return false
}

// unsafeRune reports control characters and the Unicode line separators.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}

// place is a position in the file; the zero place means "no place".
type place struct {
	line, col int
}

// invalid returns an *Error that wraps ErrInvalid (and cause, if not nil).
func invalid(file string, at place, msg, hint string, cause error) *Error {
	errs := []error{ErrInvalid}
	if cause != nil {
		errs = append(errs, cause)
	}
	return &Error{File: file, Line: at.line, Column: at.col, Msg: msg, hint: hint, errs: errs}
}
