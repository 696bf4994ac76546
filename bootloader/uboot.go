package bootloader

import (
	"errors"
	"fmt"
	"strings"
)

// UBootSettings are the variables u-boot/boot.cmd reads before it starts
// (see the script's header). Empty fields keep the script's defaults.
type UBootSettings struct {
	Groups        []string // tandem_groups; the first is the last-resort default
	EnvDev        string   // tandem_env_dev, e.g. "virtio 0:1"
	EnvFile       string   // tandem_env_file: path of the first copy on that partition
	EnvFileRedund string   // tandem_env_file_redund
	EnvSize       int      // tandem_env_size
	Boot          string   // tandem_boot: boots ${tandem_group}; required
}

// UBootCmd returns u-boot/boot.cmd preceded by one setenv line per setting,
// ready for `mkimage -T script`.
func UBootCmd(s UBootSettings) ([]byte, error) {
	if s.Boot == "" {
		return nil, errors.New("u-boot script: tandem_boot is empty")
	}
	if strings.ContainsAny(s.Boot, "'\n") {
		return nil, errors.New("u-boot script: tandem_boot may not contain a single quote or a newline")
	}
	var b strings.Builder
	set := func(name, value string) error {
		if value == "" {
			return nil
		}
		if strings.ContainsAny(value, "\"$\\\n;") {
			return fmt.Errorf("u-boot script: %s %q contains a quote, '$', '\\', ';' or a newline", name, value)
		}
		fmt.Fprintf(&b, "setenv %s \"%s\"\n", name, value)
		return nil
	}
	for _, kv := range [][2]string{
		{"tandem_groups", strings.Join(s.Groups, " ")},
		{"tandem_env_dev", s.EnvDev},
		{"tandem_env_file", s.EnvFile},
		{"tandem_env_file_redund", s.EnvFileRedund},
	} {
		if err := set(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	if s.EnvSize > 0 {
		fmt.Fprintf(&b, "setenv tandem_env_size %#x\n", s.EnvSize)
	}
	fmt.Fprintf(&b, "setenv tandem_boot '%s'\n", s.Boot)
	b.Write(UBootScript)
	return []byte(b.String()), nil
}
