//go:build !linux

package initsys

import "errors"

var errLinuxOnly = errors.New("tandem init runs on Linux only")

// Main is `tandem init`; it runs on Linux only.
func Main(args []string) error { return errLinuxOnly }

// Run performs the init sequence; it runs on Linux only.
func Run(o Options) error { return errLinuxOnly }
