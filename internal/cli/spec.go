package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/tandem-ota/tandem/internal/bundle"
)

// bundleSpec is the TOML file `bundle create --spec` reads (docs/bundle-spec.md).
type bundleSpec struct {
	Compatible  string        `toml:"compatible"`
	Version     string        `toml:"version"`
	Name        string        `toml:"name"`
	MinVersion  string        `toml:"min-version"`
	Incremental bool          `toml:"incremental"`
	Compression string        `toml:"compression"`
	Keys        []string      `toml:"keys"`
	Payloads    []specPayload `toml:"payload"`
}

type specPayload struct {
	Name      string   `toml:"name"`
	Kind      string   `toml:"kind"`   // slot (default), tree, execute
	Target    string   `toml:"target"` // slot alias; default: the name (slot, tree)
	File      string   `toml:"file"`   // the content: image, tar or script
	Handler   []string `toml:"handler"`
	Chunker   string   `toml:"chunker"`    // buzhash (default) or fixed
	ChunkSize string   `toml:"chunk-size"` // default 64K
}

type loadedSpec struct {
	header   bundle.Header
	payloads []bundle.PayloadSpec
	files    []*os.File
	level    bundle.Level
	keys     []string
}

const maxSpecSize = 1 << 20

// loadSpec reads a bundle spec strictly; file paths are relative to it.
func loadSpec(name string) (*loadedSpec, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if len(b) > maxSpecSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxSpecSize)
	}
	var s bundleSpec
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		var se *toml.StrictMissingError
		var de *toml.DecodeError
		switch {
		case errors.As(err, &se) && len(se.Errors) > 0:
			row, col := se.Errors[0].Position()
			return nil, fmt.Errorf("%s:%d:%d: unknown key %s", name, row, col, strings.Join(se.Errors[0].Key(), "."))
		case errors.As(err, &de):
			row, col := de.Position()
			return nil, fmt.Errorf("%s:%d:%d: %s", name, row, col, de.Error())
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dir := filepath.Dir(name)
	ls := &loadedSpec{level: bundle.Level(s.Compression),
		header: bundle.Header{Compatible: s.Compatible, Version: s.Version, Name: s.Name, MinVersion: s.MinVersion}}
	if s.Incremental {
		ls.header.Flags |= bundle.FlagIncremental
	}
	for _, k := range s.Keys {
		ls.keys = append(ls.keys, rel(dir, k))
	}
	if len(s.Payloads) == 0 {
		return nil, fmt.Errorf("%s: no [[payload]]", name)
	}
	for i, p := range s.Payloads {
		ps := bundle.PayloadSpec{Name: p.Name, Target: p.Target, Handler: p.Handler}
		switch p.Kind {
		case "slot", "":
			ps.Kind = bundle.KindSlot
		case "tree":
			ps.Kind = bundle.KindTree
		case "execute":
			ps.Kind = bundle.KindExecute
		default:
			return nil, fmt.Errorf("%s: payload %d: kind %q (want slot, tree or execute)", name, i+1, p.Kind)
		}
		if ps.Target == "" && ps.Kind != bundle.KindExecute {
			ps.Target = p.Name
		}
		switch p.Chunker {
		case "buzhash", "":
			ps.Chunker = bundle.ChunkerBuzhash
		case "fixed":
			ps.Chunker = bundle.ChunkerFixed
		default:
			return nil, fmt.Errorf("%s: payload %d: chunker %q (want buzhash or fixed)", name, i+1, p.Chunker)
		}
		if p.ChunkSize != "" {
			n, err := parseSize(p.ChunkSize)
			if err != nil {
				return nil, fmt.Errorf("%s: payload %d: chunk-size: %w", name, i+1, err)
			}
			ps.ChunkSize = int(n)
		}
		if p.File == "" {
			return nil, fmt.Errorf("%s: payload %d: no file", name, i+1)
		}
		f, err := os.Open(rel(dir, p.File))
		if err != nil {
			for _, f := range ls.files {
				f.Close()
			}
			return nil, fmt.Errorf("%s: payload %d: %w", name, i+1, err)
		}
		ls.files = append(ls.files, f)
		ps.Source = bufio.NewReaderSize(f, 1<<20)
		ls.payloads = append(ls.payloads, ps)
	}
	return ls, nil
}

func rel(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
