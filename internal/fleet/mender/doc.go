// Package mender is tandem's Mender update module (update module protocol
// v3): the Mender client calls `tandem mender-module STATE TREE` for the
// payload type "tandem", and the module streams the bundle from the
// Download state straight into the spare group, sets the trial in
// ArtifactInstall, reboots, checks the trial boot, commits through the
// health check and rolls back. An artifact may also carry a small
// descriptor (bundle URL and hash) instead of the bundle: the module then
// installs by delta from that URL. docs/integrations/mender.md is the user
// documentation.
package mender
