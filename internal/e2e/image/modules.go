package image

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Modules returns the kernel modules (.ko paths under modDir, the
// lib/modules/<version> directory of a kernel package) needed to load names,
// each after the modules it depends on: the order for busybox insmod. The
// dependencies are read from each module's .modinfo section, since a kernel
// package carries no modules.dep (depmod makes it at install time).
func Modules(modDir string, names ...string) ([]string, error) {
	index := map[string]string{}
	err := filepath.Walk(modDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".ko") {
			index[modName(filepath.Base(p))] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []string
	done := map[string]bool{}
	var visit func(name string, depth int) error
	visit = func(name string, depth int) error {
		name = modName(name)
		if done[name] {
			return nil
		}
		if depth > 32 {
			return fmt.Errorf("module %s: dependency loop", name)
		}
		p, ok := index[name]
		if !ok {
			return fmt.Errorf("module %s not found under %s (built in, or a compressed module?)", name, modDir)
		}
		deps, err := modDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, depth+1); err != nil {
				return err
			}
		}
		done[name] = true
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modName normalises a module name: no .ko, '-' and '_' are the same.
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

func modDepends(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", p)
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "depends="); ok {
			if v == "" {
				return nil, nil
			}
			return strings.Split(v, ","), nil
		}
	}
	return nil, nil
}
