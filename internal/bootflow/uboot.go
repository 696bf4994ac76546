package bootflow

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
	"github.com/tandem-ota/tandem/internal/cmdout"
	"github.com/tandem-ota/tandem/internal/config"
	"github.com/tandem-ota/tandem/internal/rootfs"
	"golang.org/x/sys/unix"
)

// U-Boot flow: three variables in U-Boot's redundant environment layout,
// read by the boot script in bootloader/u-boot/ (rule table in
// docs/boot-flows.md):
//
//	tandem_default=<group>       written by tandem
//	tandem_trial=<group>         written by tandem
//	tandem_trial_left=<n>        counted down by the script before it boots the trial
//
// With the file back end the variables live in two files on a FAT partition
// (the script's files mode: it loads them itself and counts down with
// fatwrite over the non-current copy): tandem reads the current copy and
// writes the other one with the next flag (new + fsync + rename), so the
// current copy is never touched and a power cut leaves it whole. With the
// fw-setenv back end, fw_setenv does the same on the copies named in
// /etc/fw_env.config (U-Boot's own redundant environment, the script's
// saveenv mode, or the two files).
const (
	UBootVarDefault   = "tandem_default"
	UBootVarTrial     = "tandem_trial"
	UBootVarTrialLeft = "tandem_trial_left"
)

// ubootStore reads and writes the U-Boot environment.
type ubootStore interface {
	load() (map[string]string, error)
	// save sets the variables (an empty value deletes) in one atomic update.
	save(vars [][2]string) error
}

type ubootFlow struct {
	store    ubootStore
	groups   []string
	attempts int
}

func newUBoot(bf config.BootFlow, groups []string, fsys rootfs.FS) *ubootFlow {
	return &ubootFlow{store: envStore(bf, fsys), groups: groups, attempts: bf.Attempts}
}

func (u *ubootFlow) Name() string { return config.FlowUBoot }

func (u *ubootFlow) Default() (string, error) {
	env, err := u.store.load()
	if err != nil {
		return "", err
	}
	def := env[UBootVarDefault]
	if err := checkGroup(u.groups, def); err != nil {
		return "", fmt.Errorf("u-boot environment: %w: %s: %w", ErrBootState, UBootVarDefault, err)
	}
	return def, nil
}

func (u *ubootFlow) TryNext(group string) error {
	if err := checkGroup(u.groups, group); err != nil {
		return err
	}
	return u.store.save([][2]string{{UBootVarTrial, group}, {UBootVarTrialLeft, strconv.Itoa(u.attempts)}})
}

func (u *ubootFlow) CancelTry() error {
	group, _, err := u.Trial()
	if err == nil && group == "" {
		return nil
	}
	return u.store.save([][2]string{{UBootVarTrial, ""}, {UBootVarTrialLeft, ""}})
}

// Commit changes the default and ends the trial in one environment update.
func (u *ubootFlow) Commit(group string) error {
	if err := checkGroup(u.groups, group); err != nil {
		return err
	}
	return u.store.save([][2]string{{UBootVarDefault, group}, {UBootVarTrial, ""}, {UBootVarTrialLeft, ""}})
}

// Trial reads the trial as the script does: an unknown group or a count that
// is not 1..9 means no trial.
func (u *ubootFlow) Trial() (string, int, error) {
	env, err := u.store.load()
	if err != nil {
		return "", 0, err
	}
	group := env[UBootVarTrial]
	left, err := strconv.Atoi(env[UBootVarTrialLeft])
	if checkGroup(u.groups, group) != nil || err != nil || left < 1 || left > config.MaxAttempts {
		return "", 0, nil
	}
	return group, left, nil
}

func (u *ubootFlow) MarkBad(group string) error {
	trial, _, err := u.Trial()
	if err != nil || trial != group {
		return err
	}
	return u.CancelTry()
}

// ubootFileStore is the redundant environment in two files.
type ubootFileStore struct {
	fsys  rootfs.FS
	files [2]string
	size  int
}

func (s *ubootFileStore) current() (int, *ubootenv.Env, byte, error) {
	var imgs [2][]byte
	for i, f := range s.files {
		b, err := s.fsys.ReadFile(f)
		if err != nil && !rootfs.IsNotExist(err) {
			return 0, nil, 0, stateErr(s.fsys.Path(f), err)
		}
		imgs[i] = b
	}
	idx, env, flag, err := ubootenv.SelectRedundant(imgs[0], imgs[1])
	if err != nil {
		return 0, nil, 0, fmt.Errorf("%s, %s: %w: %w", s.fsys.Path(s.files[0]), s.fsys.Path(s.files[1]), ErrBootState, err)
	}
	return idx, env, flag, nil
}

func (s *ubootFileStore) load() (map[string]string, error) {
	_, env, _, err := s.current()
	if err != nil {
		return nil, err
	}
	return env.Map(), nil
}

func (s *ubootFileStore) save(vars [][2]string) error {
	idx, env, flag, err := s.current()
	if err != nil {
		return err
	}
	for _, kv := range vars {
		if kv[1] == "" {
			env.Delete(kv[0])
		} else if err := env.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	img, err := ubootenv.Encode(env, s.size, true, ubootenv.NextFlag(flag))
	if err != nil {
		return err
	}
	return rootfs.WriteAtomic(s.fsys, s.files[1-idx], img, 0o644)
}

// fwSetenvStore goes through libubootenv's fw_printenv and fw_setenv.
type fwSetenvStore struct {
	fsys   rootfs.FS
	config string // host path of fw_env.config
}

// maxEnvOutput bounds what tandem accepts from fw_printenv.
const maxEnvOutput = 1 << 20

// checkRedundant refuses an fw_env.config that names fewer than two copies:
// fw_setenv would then rewrite the only copy in place.
func (s *fwSetenvStore) checkRedundant() error {
	b, err := os.ReadFile(s.config)
	if err != nil {
		return stateErr(s.config, err)
	}
	copies := 0
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			copies++
		}
	}
	if copies < 2 {
		return stateErr(s.config, fmt.Errorf("names %d environment copies; tandem needs the redundant environment (two lines)", copies))
	}
	return nil
}

func (s *fwSetenvStore) load() (map[string]string, error) {
	if err := s.checkRedundant(); err != nil {
		return nil, err
	}
	var out, errb bytes.Buffer
	cmd := exec.Command("fw_printenv", "-c", s.config)
	cmd.Stdout, cmd.Stderr = &limitedWriter{w: &out, n: maxEnvOutput}, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("fw_printenv -c %s: %w: %s", s.config, err, cmdout.LastLine(errb.String()))
	}
	env := map[string]string{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, maxEnvOutput)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			return nil, fmt.Errorf("fw_printenv -c %s: %w: malformed line %q", s.config, ErrBootState, sc.Text())
		}
		env[name] = value
	}
	return env, sc.Err()
}

func (s *fwSetenvStore) save(vars [][2]string) error {
	var script strings.Builder
	for _, kv := range vars {
		fmt.Fprintf(&script, "%s=%s\n", kv[0], kv[1]) // libubootenv: "name=value", empty value deletes
	}
	f, err := os.CreateTemp("", "tandem-fw_setenv-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(script.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	var errb bytes.Buffer
	cmd := exec.Command("fw_setenv", "-c", s.config, "-s", f.Name())
	cmd.Stderr = &errb
	if err := s.fsys.Run(cmd); err != nil {
		return fmt.Errorf("fw_setenv -c %s: %w: %s", s.config, err, cmdout.LastLine(errb.String()))
	}
	// libubootenv before 0.3.2 does not fsync what it writes to files.
	unix.Sync()
	return nil
}

type limitedWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.w.Len()+len(p) > l.n {
		return 0, fmt.Errorf("output larger than %d bytes", l.n)
	}
	return l.w.Write(p)
}
