// Command debpkg builds tandem's Debian packages from the static binaries
// with dpkg-deb, and the checksum list and signature of a release
// (docs/packages.md). It is a build tool: `make deb` runs it, and nothing
// of it is linked into tandem.
//
//	debpkg version                           the Debian version of the work tree (git describe)
//	debpkg build [-version V] [-maintainer M] -out DIR BINARY=ARCH...
//	debpkg sums [-key release.key] DIR       SHA256SUMS (and SHA256SUMS.sig) over DIR's files
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "debpkg: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: debpkg version | build [flags] BINARY=ARCH... | sums [-key KEY] DIR")
	}
	fl := flag.NewFlagSet("debpkg "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "version":
		v, err := GitVersion(".")
		if err == nil {
			fmt.Println(v)
		}
		return err
	case "build":
		version := fl.String("version", "", "Debian version (default: from git describe)")
		maint := fl.String("maintainer", DefaultMaintainer, "the control files' Maintainer")
		out := fl.String("out", "dist", "output directory")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		o := Options{Version: *version, Maintainer: *maint, Out: *out, Binaries: map[string]string{}}
		var first string
		for _, a := range fl.Args() {
			bin, arch, ok := strings.Cut(a, "=")
			if !ok || bin == "" || arch == "" {
				return fmt.Errorf("%q: want BINARY=ARCH (a Debian architecture: amd64, arm64, armhf)", a)
			}
			o.Binaries[arch] = bin
			if first == "" {
				first = bin
			}
		}
		if first == "" {
			return errors.New("build: no BINARY=ARCH given")
		}
		var err error
		if o.Version == "" {
			if o.Version, err = GitVersion("."); err != nil {
				return err
			}
		}
		if o.Date, err = sourceDate(); err != nil {
			return err
		}
		// The modules are the same for every Linux architecture (one go.mod).
		if o.Licences, err = Licences(first); err != nil {
			return err
		}
		debs, err := Build(o)
		for _, d := range debs {
			fmt.Println(d)
		}
		return err
	case "sums":
		key := fl.String("key", "", "sign SHA256SUMS with this tandem signing key (PEM)")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		if fl.NArg() != 1 {
			return errors.New("sums: want one directory")
		}
		dir := fl.Arg(0)
		if err := WriteSums(dir); err != nil {
			return err
		}
		fmt.Printf("%s/%s\n", dir, SumsFile)
		if *key == "" {
			return nil
		}
		id, err := Sign(dir, *key)
		if err == nil {
			fmt.Printf("%s/%s (key id %s)\n", dir, SigFile, id)
		}
		return err
	}
	return fmt.Errorf("unknown command %q (version, build, sums)", args[0])
}

// sourceDate is SOURCE_DATE_EPOCH, else the time of the commit built, so
// that two builds of one commit give the same packages.
func sourceDate() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		out, err := exec.Command("git", "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Time{}, fmt.Errorf("git log: %w (set SOURCE_DATE_EPOCH)", err)
		}
		s = strings.TrimSpace(string(out))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}
