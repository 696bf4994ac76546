package api

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/tandem-ota/tandem/internal/device"
)

// passwordFile is where the web page's password hash is kept, relative to
// the data directory (mode 0600, written atomically).
const passwordFile = "api/password.json"

// Password rules.
const (
	MinPassword = 10
	MaxPassword = 1024
	// pbkdf2Iterations is OWASP's 2023 figure for PBKDF2-HMAC-SHA256.
	pbkdf2Iterations = 600_000
)

// passwordHash is the password at rest: PBKDF2-HMAC-SHA256 of it with a
// random salt. The password itself is never stored.
type passwordHash struct {
	Algorithm  string `json:"algorithm"` // pbkdf2-sha256
	Iterations int    `json:"iterations"`
	Salt       []byte `json:"salt"`
	Hash       []byte `json:"hash"`
}

// ErrNoPassword: no password is set, so the web page lets nobody in.
var ErrNoPassword = errors.New("no password is set for the web page; set one with `tandem serve password` on the device")

// SetPassword reads a new web page password from the first line of r and
// keeps its hash on d (replacing any earlier one, which ends every session).
func SetPassword(d *device.Device, r io.Reader) error {
	line, err := bufio.NewReader(io.LimitReader(r, MaxPassword+2)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	switch n := utf8.RuneCountInString(pw); {
	case len(pw) > MaxPassword:
		return fmt.Errorf("the password is longer than %d bytes", MaxPassword)
	case n < MinPassword:
		return fmt.Errorf("the password has %d characters; give at least %d on standard input", n, MinPassword)
	}
	h, err := hashPassword(pw, pbkdf2Iterations)
	if err != nil {
		return err
	}
	return d.WriteJSON(path.Join(d.Config.DataDir, passwordFile), h)
}

func hashPassword(pw string, iterations int) (*passwordHash, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, pw, salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	return &passwordHash{Algorithm: "pbkdf2-sha256", Iterations: iterations, Salt: salt, Hash: key}, nil
}

// loadPassword reads the password hash of d (ErrNoPassword when none is set).
func loadPassword(d *device.Device) (*passwordHash, error) {
	var h passwordHash
	found, err := d.ReadJSON(path.Join(d.Config.DataDir, passwordFile), 4096, &h)
	switch {
	case err != nil:
		return nil, fmt.Errorf("web page password: %w", err)
	case !found:
		return nil, ErrNoPassword
	case h.Algorithm != "pbkdf2-sha256" || h.Iterations < 1 || h.Iterations > 10_000_000 || len(h.Salt) < 8 || len(h.Hash) != 32:
		return nil, fmt.Errorf("web page password file is not a pbkdf2-sha256 hash; set the password again with `tandem serve password`")
	}
	return &h, nil
}

// check reports whether pw is the password.
func (h *passwordHash) check(pw string) bool {
	if len(pw) > MaxPassword {
		return false
	}
	key, err := pbkdf2.Key(sha256.New, pw, h.Salt, h.Iterations, 32)
	return err == nil && subtle.ConstantTimeCompare(key, h.Hash) == 1
}

// id names this hash (a session belongs to the password it was opened with).
func (h *passwordHash) id() string {
	return fmt.Sprintf("%x", sha256.Sum256(append(append([]byte{}, h.Salt...), h.Hash...)))
}
