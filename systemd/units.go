// Package systemd holds the systemd units tandem ships (install them to
// /usr/lib/systemd/system/ with the binary at /usr/bin/tandem; docs/health.md
// and docs/integrations/ say which to enable). Units embeds them so that
// tests and packaging read the same files.
package systemd

import "embed"

// Units are the shipped unit files.
//
//go:embed *.service *.timer *.socket
var Units embed.FS
