package bootflow

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/tandem-ota/tandem/internal/cmdout"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
)

// Custom flow: an external controller program owns the boot state. tandem
// runs `<controller...> <operation> [group]` and reads one JSON object from
// its stdout (protocol in docs/boot-flows.md):
//
//	default            → {"group": "<name>"}
//	try-next <group>   → {}          (TANDEM_ATTEMPTS in the environment)
//	cancel-try         → {}
//	commit <group>     → {}
//	boot               → {"group": "<name>"}   only `tandem sim reboot` asks this
//
// A non-zero exit status is a failure; its last stderr line is reported. The
// controller is responsible for the crash safety of its own writes.
type customFlow struct {
	fsys       rootfs.FS
	controller []string
	groups     []string
	attempts   int
}

// MaxControllerOutput bounds what a controller may print (each of stdout and stderr).
const MaxControllerOutput = 64 << 10

// ControllerTimeout bounds one controller operation.
const ControllerTimeout = 60 * time.Second

func newCustom(bf config.BootFlow, groups []string, fsys rootfs.FS) *customFlow {
	return &customFlow{fsys: fsys, controller: bf.Controller, groups: groups, attempts: bf.Attempts}
}

func (c *customFlow) Name() string { return config.FlowCustom }

// ControllerReply is what a controller prints.
type ControllerReply struct {
	Group string `json:"group,omitempty"`
}

// RunController runs one controller operation. Operations that change state
// go through fsys.Run, so a simulated device can cut the power around them.
func RunController(fsys rootfs.FS, argv []string, attempts int, change bool, op ...string) (ControllerReply, error) {
	var reply ControllerReply
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), ControllerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, fsys.Path(argv[0]), append(append([]string{}, argv[1:]...), op...)...)
	cmd.Env = append(os.Environ(), "TANDEM_ROOT="+fsys.Path("/"), "TANDEM_ATTEMPTS="+strconv.Itoa(attempts))
	cmd.Stdout, cmd.Stderr = &limitedWriter{w: &out, n: MaxControllerOutput}, &limitedWriter{w: &errb, n: MaxControllerOutput}
	run := cmd.Run
	if change {
		run = func() error { return fsys.Run(cmd) }
	}
	if err := run(); err != nil {
		return reply, fmt.Errorf("boot controller %s %s: %w: %s", argv[0], op[0], err, cmdout.LastLine(errb.String()))
	}
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&reply); err != nil {
		return reply, fmt.Errorf("boot controller %s %s: %w: bad JSON on stdout: %w", argv[0], op[0], ErrBootState, err)
	}
	return reply, nil
}

func (c *customFlow) run(change bool, op ...string) (ControllerReply, error) {
	return RunController(c.fsys, c.controller, c.attempts, change, op...)
}

func (c *customFlow) Default() (string, error) {
	r, err := c.run(false, "default")
	if err != nil {
		return "", err
	}
	if err := checkGroup(c.groups, r.Group); err != nil {
		return "", fmt.Errorf("boot controller %s default: %w: %w", c.controller[0], ErrBootState, err)
	}
	return r.Group, nil
}

func (c *customFlow) TryNext(group string) error {
	if err := checkGroup(c.groups, group); err != nil {
		return err
	}
	_, err := c.run(true, "try-next", group)
	return err
}

func (c *customFlow) CancelTry() error {
	_, err := c.run(true, "cancel-try")
	return err
}

func (c *customFlow) Commit(group string) error {
	if err := checkGroup(c.groups, group); err != nil {
		return err
	}
	_, err := c.run(true, "commit", group)
	return err
}
