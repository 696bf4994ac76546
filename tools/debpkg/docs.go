package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/tandem-ota/tandem/internal/cli"
)

//go:embed system.toml.example
var exampleConfig string

// cliCommands is tandem's and rugix-ctrl's command trees, with cobra's
// "Auto generated" line off (the date is in the page header).
func cliCommands() (tandem, rugix *cobra.Command) {
	tandem, rugix = cli.Commands()
	for _, c := range []*cobra.Command{tandem, rugix} {
		walk(c, func(c *cobra.Command) { c.DisableAutoGenTag = true })
	}
	return tandem, rugix
}

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walk(s, f)
	}
}

// manPages writes one page per command of root (tandem-system-info.1 for
// "tandem system info"), as cobra/doc renders them, gzip -9n'd into
// /usr/share/man/man1.
func manPages(t *tree, root *cobra.Command, version string, date time.Time) error {
	var err error
	walk(root, func(c *cobra.Command) {
		if err != nil || !c.IsAvailableCommand() && c != root || c.IsAdditionalHelpTopicCommand() {
			return
		}
		var buf bytes.Buffer
		h := &doc.GenManHeader{Section: "1", Date: &date, Source: root.Name() + " " + version, Manual: "tandem manual"}
		if err = doc.GenMan(c, h, &buf); err != nil {
			err = fmt.Errorf("man page of %s: %w", c.CommandPath(), err)
			return
		}
		t.gz("usr/share/man/man1/"+strings.ReplaceAll(c.CommandPath(), " ", "-")+".1.gz", buf.Bytes())
	})
	return err
}

// completions writes cobra's bash, zsh and fish completions where those
// shells look for a package's completions.
func completions(t *tree, root *cobra.Command) error {
	var bash, zsh, fish bytes.Buffer
	if err := root.GenBashCompletionV2(&bash, true); err != nil {
		return err
	}
	if err := root.GenZshCompletion(&zsh); err != nil {
		return err
	}
	if err := root.GenFishCompletion(&fish, true); err != nil {
		return err
	}
	t.file("usr/share/bash-completion/completions/tandem", bash.Bytes(), 0o644)
	t.file("usr/share/zsh/vendor-completions/_tandem", zsh.Bytes(), 0o644)
	t.file("usr/share/fish/vendor_completions.d/tandem.fish", fish.Bytes(), 0o644)
	return nil
}

// ModuleLicence is the licence text of one Go module linked into tandem.
type ModuleLicence struct {
	Module string // path@version, or "Go standard library"
	Files  map[string]string
}

// licenceFile names the files of a module that carry its licence terms.
var licenceFile = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice|edl-v|epl-v)`)

// maxLicenceFile bounds one licence file read into the copyright file.
const maxLicenceFile = 256 << 10

// Licences reads the licences of the Go standard library and of every
// module the binary was built from (its build information, `go version
// -m`), from the module cache (downloading a module that is missing).
func Licences(binary string) ([]ModuleLicence, error) {
	out, err := exec.Command("go", "version", "-m", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("go version -m %s: %w", binary, err)
	}
	b, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOROOT: %w", err)
	}
	goroot := strings.TrimSpace(string(b))
	std, err := licenceFiles(goroot)
	if err != nil || len(std) == 0 {
		return nil, fmt.Errorf("licence of the Go standard library in %s: %v", goroot, err)
	}
	ls := []ModuleLicence{{Module: "Go standard library", Files: std}}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "dep" {
			continue
		}
		mod := f[1] + "@" + f[2]
		dl, err := exec.Command("go", "mod", "download", "-json", mod).Output()
		if err != nil {
			return nil, fmt.Errorf("go mod download %s: %w", mod, err)
		}
		var info struct{ Dir string }
		if err := json.Unmarshal(dl, &info); err != nil || info.Dir == "" {
			return nil, fmt.Errorf("go mod download %s: no directory (%v)", mod, err)
		}
		files, err := licenceFiles(info.Dir)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("module %s has no licence file in %s", mod, info.Dir)
		}
		ls = append(ls, ModuleLicence{Module: mod, Files: files})
	}
	return ls, nil
}

func licenceFiles(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, e := range entries {
		if !e.Type().IsRegular() || !licenceFile.MatchString(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if len(b) > maxLicenceFile {
			return nil, fmt.Errorf("%s: licence file larger than %d bytes", filepath.Join(dir, e.Name()), maxLicenceFile)
		}
		files[e.Name()] = string(b)
	}
	return files, nil
}

// copyright is /usr/share/doc/<pkg>/copyright (plain text, not the
// machine-readable format): tandem's own terms and the licence texts of
// what the static binary contains, which BSD and MIT licences require to
// travel with the binary.
func copyright(ls []ModuleLicence) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "tandem: A/B over-the-air updates for embedded Linux\nHomepage: %s\n\n", Homepage)
	b.WriteString(`Copyright: the tandem authors (see the git history).
License: the tandem repository does not declare a licence yet (it has no
LICENSE file); until it does, this package grants no licence to tandem's
own code beyond what its authors grant elsewhere.

The tandem binary is statically linked. It contains the Go standard library
and the Go modules listed below; each one's licence files follow, as the
module ships them.
`)
	for _, l := range ls {
		names := make([]string, 0, len(l.Files))
		for n := range l.Files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "\n%s\n%s: %s\n%s\n\n", strings.Repeat("-", 72), l.Module, n, strings.Repeat("-", 72))
			b.WriteString(strings.TrimRight(commonLicences(strings.ReplaceAll(l.Files[n], "\r", "")), "\n") + "\n")
		}
	}
	return []byte(b.String())
}

// apacheText is the body of the Apache License 2.0, from its title to the
// end of its terms (or of the file: some modules ship the terms alone).
var apacheText = regexp.MustCompile(`(?s)[ \t]*Apache License\s+Version 2\.0, January 2004.*?(?:END OF TERMS AND CONDITIONS|\z)`)

// commonLicences replaces the full text of the Apache License 2.0 by a
// reference to Debian's copy, as Debian policy (12.5) asks.
func commonLicences(s string) string {
	return apacheText.ReplaceAllLiteralString(s, "The Apache License, Version 2.0: /usr/share/common-licenses/Apache-2.0")
}
