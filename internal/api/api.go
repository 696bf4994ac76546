// Package api is tandem's local API: the operations the software on the
// device may ask for (info, install from a URL or an uploaded stream,
// progress events, cancel, reboot, commit, mark-bad, the last outcome), served
// as versioned HTTP/JSON on a Unix socket (Server, checked by the caller's
// SO_PEERCRED per call class) and, when configured, as a small field-service
// web page over TLS with a password (Web). It is an adapter like the fleet
// adapters: it has no install logic of its own and calls install.Install
// and install.Activate, as the CLI does.
//
// The same operations run in process (Local) or through a running server
// (Client): Connect picks the server when its socket answers, so that a CLI
// install while the server runs shows up in the server's event stream and
// takes its place in its one-operation-at-a-time order. docs/api.md is the
// reference.
package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandem-ota/tandem/internal/device"
	"github.com/tandem-ota/tandem/internal/install"
)

// SocketPath is the device path of the API's Unix socket.
const SocketPath = "/run/tandem/api.sock"

// Version is the path prefix of this version of the API.
const Version = "/v1"

// Ops are the operations of the API, in process (Local) or through a
// server (Client). Each returns errors that the CLI maps to its exit codes:
// a Client's errors unwrap to the same sentinels a Local's carry.
type Ops interface {
	// Info is `tandem system info --json`'s document.
	Info(ctx context.Context) (*device.Info, error)
	// Install installs r into the spare group (install.Install), then does
	// what r.Reboot asks (install.Activate). progress, when not nil,
	// receives the install's events (install.Event: progress only; the
	// final done or error event is the caller's to print).
	Install(ctx context.Context, r InstallRequest, progress func(install.Event)) (*install.Result, error)
	// Commit makes the running group the default.
	Commit(ctx context.Context, r CommitRequest) (*CommitResult, error)
	// Reboot reboots, with Spare first setting the trial of the spare group.
	Reboot(ctx context.Context, r RebootRequest) (*RebootResult, error)
	// MarkBad ends a trial (device.MarkBad, the meaning of `tandem boot
	// mark-bad`): by default the running group's, so that the next boot
	// starts the default group again.
	MarkBad(ctx context.Context, r MarkBadRequest) error
	// ResetState asks for a factory reset of the state at the next boot
	// (device.ResetState).
	ResetState(ctx context.Context, r ResetRequest) error
}

// InstallRequest is an install: Options (Source a path, "-" with Stdin, or
// an http(s) URL) and what to do once it is recorded.
type InstallRequest struct {
	Options install.Options
	Reboot  install.Reboot // "" = no
}

// CommitRequest is a commit.
type CommitRequest struct {
	// ForceIncomplete commits a group whose install did not finish.
	ForceIncomplete bool `json:"forceIncomplete,omitempty"`
}

// CommitResult is what a commit did.
type CommitResult struct {
	Changed bool   `json:"changed"` // false: the running group already was the default
	Default string `json:"default"` // the default group afterwards
}

// RebootRequest is a reboot.
type RebootRequest struct {
	Spare           bool `json:"spare,omitempty"`           // boot the spare group once on trial
	ForceIncomplete bool `json:"forceIncomplete,omitempty"` // with Spare: even an incomplete one
}

// RebootResult is what a reboot did.
type RebootResult struct {
	Trial string `json:"trial,omitempty"` // the group that boots on trial (Spare)
	// Simulated: the device is simulated; the reboot was recorded and
	// `tandem sim reboot Root` performs it.
	Simulated bool   `json:"simulated,omitempty"`
	Root      string `json:"root,omitempty"`
}

// MarkBadRequest ends a trial.
type MarkBadRequest struct {
	// Group is the group whose trial ends ("": the running group).
	Group  string `json:"group,omitempty"`
	Reason string `json:"reason,omitempty"` // recorded as the last update's message
}

// ResetRequest is a factory reset of the state.
type ResetRequest struct {
	Backup bool `json:"backup,omitempty"` // keep a backup of the state being reset
	Reboot bool `json:"reboot,omitempty"` // reboot now
}

// Operation is what the server runs now.
type Operation struct {
	Name    string    `json:"name"`             // install, commit, reboot, mark-bad, state-reset
	Source  string    `json:"source,omitempty"` // install: the URL or "upload"
	Started time.Time `json:"started"`
	// Caller is who asked: "uid N" on the socket, "web" on the page.
	Caller string `json:"caller"`
	// Progress is the last event of an install in flight.
	Progress *install.Event `json:"progress,omitempty"`
}

// Outcome is how the server's last operation ended (GET /v1/last), kept in
// <data-dir>/api/last.json across restarts.
type Outcome struct {
	Operation
	Ended  time.Time      `json:"ended"`
	Status string         `json:"status"`          // ok, failed or cancelled
	Error  string         `json:"error,omitempty"` // one line
	Kind   string         `json:"kind,omitempty"`  // the error's kind (Error.Kind)
	Result *install.Event `json:"result,omitempty"`
}

// Last is GET /v1/last: the server's last operation and the device's last
// update (as system info reports it).
type Last struct {
	Operation  *Outcome       `json:"operation"`
	LastUpdate *device.Result `json:"lastUpdate"`
}

// Error kinds: the class of a failure, as HTTP statuses and the CLI's exit
// codes tell them apart.
const (
	KindUsage     = "usage"      // a malformed request (400)
	KindForbidden = "forbidden"  // the caller may not do this (403)
	KindNotFound  = "not-found"  // no such endpoint (404)
	KindMethod    = "method"     // wrong HTTP method (405)
	KindBusy      = "busy"       // another operation runs (409)
	KindRefused   = "refused"    // a safety rule refused it (409)
	KindTooLarge  = "too-large"  // the request body is too large (413)
	KindBundle    = "bundle"     // the bundle was rejected (422)
	KindConfig    = "config"     // the device's configuration is invalid (500)
	KindBootState = "boot-state" // the boot loader's state is unusable (500)
	KindCancelled = "cancelled"  // cancelled (POST /v1/cancel) or the client went away (499)
	KindFailure   = "failure"    // anything else (500)
)

// Error is a failure as the API answers it: {"error": ..., "kind": ...},
// with Busy naming the operation that runs for KindBusy.
type Error struct {
	Status  int        `json:"-"`
	Message string     `json:"error"`
	Kind    string     `json:"kind"`
	Busy    *Operation `json:"busy,omitempty"`
	// err is the error the server saw (in process only).
	err error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel error of the kind, so that the CLI's exit
// codes are the same through a server as in process: busy and refused are
// device.ErrRefused, bundle is install's bundle class, config and
// boot-state theirs.
func (e *Error) Unwrap() error {
	if e.err != nil {
		return e.err
	}
	return kindErrors[e.Kind]
}

// ErrCancelled: the operation was cancelled.
var ErrCancelled = errors.New("cancelled")

// ErrBusy: another operation runs; it is also device.ErrRefused.
var ErrBusy = fmt.Errorf("%w: busy", device.ErrRefused)
