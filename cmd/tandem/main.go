// Command tandem is the A/B update agent and bundler. All logic lives in
// internal/cli and below.
package main

import (
	"os"

	"github.com/tandem-ota/tandem/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Env{Name: os.Args[0], Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
