// Command tandem is the A/B update agent and bundler. All logic lives in
// internal/cli and below. Invoked as tandem-init it is the system's first
// process (internal/state/initsys).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandem-ota/tandem/internal/cli"
	"github.com/tandem-ota/tandem/internal/state/initsys"
)

func main() {
	if filepath.Base(os.Args[0]) == initsys.Name {
		// The kernel's init= (docs/state.md): returns only when no init could be run.
		fmt.Fprintf(os.Stderr, "tandem-init: %v\n", initsys.Main(os.Args[1:]))
		os.Exit(1)
	}
	os.Exit(cli.Main(os.Args[1:], cli.Env{Name: os.Args[0], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
