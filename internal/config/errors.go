package config

import (
	"errors"
	"strconv"
	"strings"
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

// oneLine escapes line breaks so that a message stays on one line whatever
// the file name or an underlying error contains.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
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
