package config

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// decode decodes data into cfg strictly: a key that cfg has no field for is
// an error.
func decode(data []byte, cfg *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(cfg)
}

// decodeError turns a go-toml error into a one-line *Error.
func decodeError(file string, ix *index, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		return unknownKeyError(file, ix, strict)
	}
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		return invalid(file, place{}, strings.TrimPrefix(err.Error(), "toml: "), "", err)
	}
	line, col := de.Position()
	path := ix.byOffset[ix.offset(line, col)]
	if path == nil {
		path = de.Key()
	}
	msg := strings.TrimPrefix(de.Error(), "toml: ")
	return invalid(file, place{line: line, col: col}, decodeMessage(msg, path), "", err)
}

// decodeMessage words a go-toml message: type mismatches in TOML terms and
// with the full key, syntax errors as such.
func decodeMessage(msg string, path []string) string {
	switch {
	case typeMismatch.MatchString(msg):
		return displayPath(path) + ": " + typeMessage(msg)
	case strings.HasPrefix(msg, "cannot ") && len(path) > 0:
		return displayPath(path) + ": " + msg
	default:
		return "invalid TOML: " + msg
	}
}

// unknownKeyError reports the first unknown key in the file. go-toml's
// strict mode says that there is one; the index knows its full path, also
// inside inline tables, where go-toml's key is partial.
func unknownKeyError(file string, ix *index, strict *toml.StrictMissingError) error {
	if path := firstUnknownKey(ix); path != nil {
		return invalid(file, ix.key(path...), unknownKeyMessage(path), "", strict)
	}
	if len(strict.Errors) == 0 {
		return invalid(file, place{}, "unknown key", "", strict)
	}
	e := &strict.Errors[0]
	line, col := e.Position()
	return invalid(file, place{line: line, col: col}, unknownKeyMessage(e.Key()), "", strict)
}

// typeMismatch matches go-toml's message for a value of the wrong type.
var typeMismatch = regexp.MustCompile(`^cannot decode TOML (.+) into (?:struct field \S+ of type )?(.+)$`)

// typeMessage rewrites a go-toml type mismatch in TOML words.
func typeMessage(msg string) string {
	m := typeMismatch.FindStringSubmatch(msg)
	return fmt.Sprintf("expected %s, found %s", tomlType(m[2]), m[1])
}

// tomlType names a Go type of the data model the way the file spells it.
func tomlType(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "int":
		return "an integer"
	case goType == "bool":
		return "a boolean"
	case goType == "[]string":
		return "an array of strings"
	case goType == "map[string]string":
		return "a table of strings"
	case goType == "map[string]int":
		return "a table of integers"
	default:
		return "a table"
	}
}

// Keys of each table of the data model, in declaration order.
var (
	configKeys   = tomlKeys(reflect.TypeFor[Config]())
	slotKeys     = tomlKeys(reflect.TypeFor[Slot]())
	groupKeys    = tomlKeys(reflect.TypeFor[Group]())
	bootFlowKeys = tomlKeys(reflect.TypeFor[BootFlow]())
	downloadKeys = tomlKeys(reflect.TypeFor[Download]())
)

func tomlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// firstUnknownKey returns the first key path, in document order, that the
// data model does not have.
func firstUnknownKey(ix *index) []string {
	for _, path := range ix.order {
		if !knownPath(path) {
			return path
		}
	}
	return nil
}

// knownPath reports whether path is a key of the data model. Names of
// slots, groups and aliases and the keys of partitions and entries are free.
func knownPath(path []string) bool {
	switch {
	case len(path) == 1:
		return slices.Contains(configKeys, path[0])
	case path[0] == "slots":
		return len(path) == 2 || len(path) == 3 && slices.Contains(slotKeys, path[2])
	case path[0] == "groups":
		return len(path) == 2 ||
			len(path) == 3 && slices.Contains(groupKeys, path[2]) ||
			len(path) == 4 && path[2] == "slots"
	case path[0] == "boot-flow":
		return len(path) == 2 && slices.Contains(bootFlowKeys, path[1]) ||
			len(path) == 3 && (path[1] == "partitions" || path[1] == "entries" || path[1] == "names" || path[1] == "options")
	case path[0] == "download":
		return len(path) == 2 && slices.Contains(downloadKeys, path[1])
	}
	return false
}

// validKeys returns the keys allowed in the table at path, or nil when the
// table's keys are names.
func validKeys(table []string) []string {
	switch {
	case len(table) == 0:
		return configKeys
	case len(table) == 2 && table[0] == "slots":
		return slotKeys
	case len(table) == 2 && table[0] == "groups":
		return groupKeys
	case len(table) == 1 && table[0] == "boot-flow":
		return bootFlowKeys
	case len(table) == 1 && table[0] == "download":
		return downloadKeys
	}
	return nil
}

func unknownKeyMessage(path []string) string {
	if len(path) == 0 {
		return "unknown key"
	}
	msg := displayPath(path) + ": unknown key"
	if keys := validKeys(path[:len(path)-1]); keys != nil {
		msg += " (valid here: " + strings.Join(keys, ", ") + ")"
	}
	return msg
}
