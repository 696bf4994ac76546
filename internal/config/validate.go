package config

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults applied when the file leaves a key out.
const (
	DefaultDataDir     = "/var/lib/tandem"
	DefaultKeysDir     = "/etc/tandem/keys"
	DefaultHooksDir    = "/etc/tandem/hooks"
	DefaultBootDir     = "/boot"
	DefaultEnvSize     = 0x4000
	DefaultFwEnvConfig = "/etc/fw_env.config"
	DefaultEFIVarsDir  = "/sys/firmware/efi/efivars"
)

// Limits checked by validation.
const (
	MaxCompatibleLen = 128     // bytes
	MaxPartition     = 128     // block slot partition numbers are 1..MaxPartition
	MaxBootPartition = 63      // rpi-tryboot partition numbers are 1..MaxBootPartition
	MinEnvSize       = 256     // uboot env-size lower bound, bytes
	MaxEnvSize       = 1 << 20 // uboot env-size upper bound, bytes
	MaxMinRate       = 1 << 30 // download min-rate upper bound, bytes per second
)

// checker applies defaults to a decoded Config and validates it. It collects
// every problem; run returns the first one in file order.
type checker struct {
	file string
	ix   *index
	cfg  *Config
	errs []*Error
	// root, when not empty, is the host directory the system's files are
	// under: slots are then also compared as they resolve there.
	root string
}

func (c *checker) run() error {
	c.top()
	c.slots()
	c.groups()
	c.bootFlow()
	c.download()
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, byPlace)
	return c.errs[0]
}

// byPlace orders errors by their place in the file.
func byPlace(a, b *Error) int {
	return comparePlaces(place{a.Line, a.Column}, place{b.Line, b.Column})
}

// comparePlaces orders places by line and column; no place goes last.
func comparePlaces(a, b place) int {
	if (a.line == 0) != (b.line == 0) {
		if a.line == 0 {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.line, b.line), cmp.Compare(a.col, b.col))
}

// fail records "<path>: <message>" at a place (path may be nil).
func (c *checker) fail(at place, key []string, format string, args ...any) {
	c.failHint(at, "", key, format, args...)
}

func (c *checker) failHint(at place, hint string, key []string, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != nil {
		msg = displayPath(key) + ": " + msg
	}
	c.errs = append(c.errs, invalid(c.file, at, msg, hint, nil))
}

// top checks the top-level keys.
func (c *checker) top() {
	cfg := c.cfg
	c.compatible()
	cfg.DataDir = c.optPath(DefaultDataDir, cfg.DataDir, "data-dir")
	cfg.KeysDir = c.optPath(DefaultKeysDir, cfg.KeysDir, "keys-dir")
	cfg.HooksDir = c.optPath(DefaultHooksDir, cfg.HooksDir, "hooks-dir")
	cfg.RootDisk = c.optPath("", cfg.RootDisk, "root-disk")
	if c.ix.has("reboot-command") {
		c.argv([]string{"reboot-command"}, cfg.RebootCommand, true)
	} else {
		cfg.RebootCommand = []string{"reboot"}
	}
}

func (c *checker) compatible() {
	key := []string{"compatible"}
	if !c.ix.has(key...) {
		c.failHint(place{}, `add a line such as compatible = "acme-gateway-v2" before the first table`, nil,
			"compatible is required: it names the bundles that fit this device")
		return
	}
	v, at := c.cfg.Compatible, c.ix.value(key...)
	switch {
	case v == "":
		c.fail(at, key, "must not be empty")
	case len(v) > MaxCompatibleLen:
		c.fail(at, key, "is %d bytes long; the limit is %d", len(v), MaxCompatibleLen)
	default:
		for i := 0; i < len(v); i++ {
			if v[i] <= ' ' || v[i] > '~' {
				c.fail(at, key, "%q contains %q; use printable ASCII without spaces", v, v[i:i+1])
				return
			}
		}
	}
}

// optPath returns def when the file does not set key, else the checked and
// cleaned path it sets.
func (c *checker) optPath(def, value string, key ...string) string {
	if !c.ix.has(key...) {
		return def
	}
	return c.path(key, value)
}

// path checks that v is absolute, has no ".." element and no control
// character, and returns it cleaned (no "//", "/./" or trailing "/").
func (c *checker) path(key []string, v string) string {
	if why := badPath(v); why != "" {
		c.fail(c.ix.value(key...), key, "%s", why)
		return v
	}
	return path.Clean(v)
}

func badPath(v string) string {
	switch {
	case v == "":
		return "must be an absolute path, not empty"
	case !strings.HasPrefix(v, "/"):
		return fmt.Sprintf("%q is not an absolute path", v)
	case hasDotDot(v):
		return fmt.Sprintf(`%q contains a ".." element`, v)
	}
	return badText(v)
}

func hasDotDot(p string) bool {
	return slices.Contains(strings.Split(p, "/"), "..")
}

// badText rejects strings that are not valid UTF-8 or hold control
// characters, which have no place in paths, names or arguments.
func badText(s string) string {
	if !utf8.ValidString(s) {
		return fmt.Sprintf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Sprintf("%q contains a control character", s)
		}
	}
	return ""
}

// argv checks a command line: not empty, and its program an absolute path
// (or, when bare is true, a program name without '/' looked up in PATH).
func (c *checker) argv(key []string, argv []string, bare bool) {
	if len(argv) == 0 {
		c.fail(c.ix.value(key...), key, "must not be empty")
		return
	}
	for i, arg := range argv {
		if why := badText(arg); why != "" {
			ek := with(key, elemPart(i))
			c.fail(c.ix.value(ek...), ek, "%s", why)
		}
	}
	ek := with(key, elemPart(0))
	at, prog := c.ix.value(ek...), argv[0]
	switch {
	case prog == "":
		c.fail(at, ek, "the program must not be empty")
	case bare && !strings.Contains(prog, "/"):
	case !strings.HasPrefix(prog, "/") && bare:
		c.fail(at, ek, "%q must be an absolute path or a program name without '/'", prog)
	case !strings.HasPrefix(prog, "/"):
		c.fail(at, ek, "%q must be an absolute path", prog)
	case hasDotDot(prog):
		c.fail(at, ek, `%q contains a ".." element`, prog)
	}
}

// with returns key extended by parts, without sharing key's array.
func with(key []string, parts ...string) []string {
	return append(slices.Clip(key), parts...)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// name checks the name of a slot, group or alias (the last part of key).
func (c *checker) name(key []string, what string) {
	name := key[len(key)-1]
	if !validName(name) {
		c.fail(c.ix.key(key...), key, "invalid %s name %q: use 1 to 64 characters a-z 0-9 . _ - starting with a letter or digit", what, name)
	}
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		lower := b >= 'a' && b <= 'z' || b >= '0' && b <= '9'
		if !lower && (i == 0 || b != '.' && b != '_' && b != '-') {
			return false
		}
	}
	return true
}

// download checks the [download] table.
func (c *checker) download() {
	d := c.cfg.Download
	if key := []string{"download", "min-rate"}; c.ix.has(key...) && (d.MinRate < 1 || d.MinRate > MaxMinRate) {
		c.fail(c.ix.value(key...), key, "must be between 1 and %d bytes per second, got %d", MaxMinRate, d.MinRate)
	}
	c.duration([]string{"download", "stall-window"}, d.StallWindow, time.Second, time.Hour)
	c.duration([]string{"download", "deadline"}, d.Deadline, time.Minute, 365*24*time.Hour)
	if key := []string{"download", "redirect-headers"}; c.ix.has(key...) && d.RedirectHeaders != RedirectSameHost && d.RedirectHeaders != RedirectAnyHost {
		c.fail(c.ix.value(key...), key, "must be %q or %q, got %q", RedirectSameHost, RedirectAnyHost, d.RedirectHeaders)
	}
}

// duration checks that the file sets key, if at all, to a duration (Go
// syntax: "90s", "2h30m") between lo and hi.
func (c *checker) duration(key []string, v string, lo, hi time.Duration) {
	if !c.ix.has(key...) {
		return
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		c.fail(c.ix.value(key...), key, "%q is not a duration such as \"90s\" or \"2h30m\"", v)
	case d < lo || d > hi:
		c.fail(c.ix.value(key...), key, "must be between %v and %v, got %v", lo, hi, d)
	}
}
