package config

import (
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// index records where each key and value of a TOML document is written, so
// that errors found after decoding can point at their place. Keys are paths
// of key parts: ["groups", "a", "slots", "system"]. Array elements get a part
// made by elemPart; they are values, never keys.
type index struct {
	lineStarts []int
	keys       map[string]place // path → where its (last) key part is first written
	values     map[string]place // path → where its value starts
	byOffset   map[int][]string // byte offset of a key part or value → its path
	order      [][]string       // key paths in document order, each once
}

// maxIndexDepth bounds the paths the index records. The schema is at most four
// keys deep; the bound keeps a document of deeply nested inline tables or
// arrays from costing quadratic memory.
const maxIndexDepth = 8

// buildIndex indexes data. It stops at the first syntax error and keeps what
// it has: the decoder reports that error.
func buildIndex(data []byte) *index {
	ix := &index{
		lineStarts: lineStarts(data),
		keys:       map[string]place{},
		values:     map[string]place{},
		byOffset:   map[int][]string{},
	}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = ix.addKey(nil, e.Key())
		case unstable.KeyValue:
			ix.addKeyValue(table, e)
		}
	}
	return ix
}

func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, b := range data {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// addKey records every prefix of prefix+key and returns the full path.
func (ix *index) addKey(prefix []string, key unstable.Iterator) []string {
	path := slices.Clone(prefix)
	for key.Next() {
		n := key.Node()
		path = append(path, string(n.Data))
		if len(path) > maxIndexDepth {
			continue
		}
		p := slices.Clone(path)
		id := pathID(p)
		if _, ok := ix.keys[id]; !ok {
			ix.keys[id] = ix.place(int(n.Raw.Offset))
			ix.order = append(ix.order, p)
		}
		ix.byOffset[int(n.Raw.Offset)] = p
	}
	return path
}

func (ix *index) addKeyValue(prefix []string, kv *unstable.Node) {
	path := ix.addKey(prefix, kv.Key())
	ix.addValue(path, kv.Value())
}

func (ix *index) addValue(path []string, v *unstable.Node) {
	if len(path) > maxIndexDepth {
		return
	}
	switch v.Kind {
	case unstable.Array:
		// Array nodes carry no position: the first element stands for it.
		it := v.Children()
		for i := 0; it.Next(); i++ {
			ix.addValue(append(slices.Clone(path), elemPart(i)), it.Node())
			if i == 0 && it.Node().Kind != unstable.Array {
				ix.setValue(path, int(it.Node().Raw.Offset))
			}
		}
	case unstable.InlineTable:
		ix.setValue(path, int(v.Raw.Offset))
		it := v.Children()
		for it.Next() {
			ix.addKeyValue(path, it.Node())
		}
	default:
		ix.setValue(path, int(v.Raw.Offset))
	}
}

func (ix *index) setValue(path []string, offset int) {
	ix.values[pathID(path)] = ix.place(offset)
	if _, ok := ix.byOffset[offset]; !ok {
		ix.byOffset[offset] = path
	}
}

// place converts a byte offset to a line and column.
func (ix *index) place(offset int) place {
	line := sort.Search(len(ix.lineStarts), func(i int) bool { return ix.lineStarts[i] > offset })
	return place{line: line, col: offset - ix.lineStarts[line-1] + 1}
}

// offset converts a line and column back to a byte offset (-1 if outside).
func (ix *index) offset(line, col int) int {
	if line < 1 || line > len(ix.lineStarts) || col < 1 {
		return -1
	}
	return ix.lineStarts[line-1] + col - 1
}

// has reports whether the document writes the key path (as a key, a table
// header, or a prefix of a dotted key).
func (ix *index) has(path ...string) bool {
	_, ok := ix.keys[pathID(path)]
	return ok
}

// key returns where the key path is written, or else where its nearest
// written ancestor is, or no place.
func (ix *index) key(path ...string) place {
	for n := len(path); n > 0; n-- {
		if at, ok := ix.keys[pathID(path[:n])]; ok {
			return at
		}
	}
	return place{}
}

// value returns where the value of path starts, falling back to key.
func (ix *index) value(path ...string) place {
	if at, ok := ix.values[pathID(path)]; ok {
		return at
	}
	return ix.key(path...)
}

func pathID(path []string) string { return strings.Join(path, "\x00") }

// elemPart is the path part of array element i.
func elemPart(i int) string { return "\x01" + strconv.Itoa(i) }

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// displayPath renders a path as it would be written in TOML:
// groups.a.slots.system, slots."x y", reboot-command[0].
func displayPath(path []string) string {
	var b strings.Builder
	for i, part := range path {
		switch {
		case strings.HasPrefix(part, "\x01"):
			b.WriteString("[" + part[1:] + "]")
			continue
		case i > 0:
			b.WriteByte('.')
		}
		if bareKey.MatchString(part) {
			b.WriteString(part)
		} else {
			b.WriteString(strconv.Quote(part))
		}
	}
	return b.String()
}
