package image

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
	"github.com/tandem-ota/tandem/internal/bootenv/ubootenv"
	diskimage "github.com/tandem-ota/tandem/internal/image"
)

// Boot loaders of the x86-64 images that run another update system's GRUB
// integration (docs/migrating.md). The GRUB scripts below are written for
// these tests from each project's public description of its variables
// (Mender's grub-mender-grubenv, RAUC's GRUB integration, Rugix Ctrl's GRUB
// boot flow); none of their scripts is copied. They pass tandem.group= to
// the kernel only so that the test system can print which group booted.
const (
	LoaderMenderGrub = "mender-grub"
	LoaderRAUCGrub   = "rauc-grub"
	LoaderRugixGrub  = "rugix-grub"
)

// adoptFlows are the [boot-flow] tables of those images.
var adoptFlows = map[string]string{
	LoaderMenderGrub: "type = \"mender-grub\"\nboot-dir = \"/boot/efi\"\n",
	LoaderRAUCGrub:   "type = \"rauc-grub\"\nboot-dir = \"/boot/efi\"\n",
	LoaderRugixGrub:  "type = \"rugix-grub\"\nboot-dir = \"/boot/efi\"\n",
}

// adoptBoot is the end of each script: boot partition ${part} as group ${g}.
const adoptBoot = `
if [ "${part}" = "3" ]; then set g=b; else set g=a; fi
echo "GRUB-E2E group=${g} part=${part}"
menuentry "system ${g}" {
  linux (hd0,gpt${part})/boot/vmlinuz root=/dev/vda${part} tandem.group=${g} console=ttyS0 panic=1
  initrd (hd0,gpt${part})/boot/initrd.img
}
`

// menderGrubCfg: Mender's variables in its grubenv pair; a copy whose lock
// is not editing=0 is restored from the other (copy 2 first), copy 1 is read,
// upgrade_available=1 counts the boot (bootcount 0 → 1) or, when the boot was
// already counted, swaps to the other partition; both copies are saved in
// Mender's order (lock 2, env 2, lock 2, lock 1, env 1, lock 1).
const menderGrubCfg = `set timeout=0
set default=0
set pa=2
set pb=3
set menv=/grub-mender-grubenv
set editing=invalid
load_env --file ${menv}/mender_grubenv2/lock editing
if [ "${editing}" != "0" ]; then
  load_env --file ${menv}/mender_grubenv1/env bootcount mender_boot_part upgrade_available
  save_env --file ${menv}/mender_grubenv2/env bootcount mender_boot_part upgrade_available
  set editing=0
  save_env --file ${menv}/mender_grubenv2/lock editing
else
  set editing=invalid
  load_env --file ${menv}/mender_grubenv1/lock editing
  if [ "${editing}" != "0" ]; then
    load_env --file ${menv}/mender_grubenv2/env bootcount mender_boot_part upgrade_available
    save_env --file ${menv}/mender_grubenv1/env bootcount mender_boot_part upgrade_available
    set editing=0
    save_env --file ${menv}/mender_grubenv1/lock editing
  fi
fi
load_env --file ${menv}/mender_grubenv1/env bootcount mender_boot_part upgrade_available
if [ "${mender_boot_part}" != "${pb}" ]; then set mender_boot_part=${pa}; fi
if [ "${upgrade_available}" = "1" ]; then
  if [ "${bootcount}" != "0" ]; then
    echo "mender: rolling back"
    if [ "${mender_boot_part}" = "${pa}" ]; then set mender_boot_part=${pb}; else set mender_boot_part=${pa}; fi
    set upgrade_available=0
    set bootcount=0
  else
    echo "mender: booting the new update"
    set bootcount=1
  fi
  for c in 2 1; do
    set editing=1
    save_env --file ${menv}/mender_grubenv${c}/lock editing
    save_env --file ${menv}/mender_grubenv${c}/env bootcount mender_boot_part upgrade_available
    set editing=0
    save_env --file ${menv}/mender_grubenv${c}/lock editing
  done
fi
set part=${mender_boot_part}
` + adoptBoot

// raucGrubCfg: RAUC's ORDER, <bootname>_OK and <bootname>_TRY in
// /grub/grubenv. Every slot looked at gets TRY=1; the first with OK=1 and
// TRY=0 boots. When none does, the TRY flags of good slots are cleared and
// the machine restarts (RAUC's example starts a rescue entry instead).
const raucGrubCfg = `set timeout=0
set default=0
set ORDER="A B"
set A_OK=0
set B_OK=0
set A_TRY=0
set B_TRY=0
load_env --file /grub/grubenv
set slot=""
for s in ${ORDER}; do
  if [ "${s}" = "A" ]; then set ok="${A_OK}"; set try="${A_TRY}"; set A_TRY=1; fi
  if [ "${s}" = "B" ]; then set ok="${B_OK}"; set try="${B_TRY}"; set B_TRY=1; fi
  if [ "${ok}" = "1" -a "${try}" = "0" ]; then
    set slot="${s}"
    break
  fi
done
if [ -z "${slot}" ]; then
  if [ "${A_OK}" = "1" ]; then set A_TRY=0; fi
  if [ "${B_OK}" = "1" ]; then set B_TRY=0; fi
  save_env --file /grub/grubenv A_TRY B_TRY
  echo "rauc: no slot to boot, flags reset; restarting"
  reboot
fi
save_env --file /grub/grubenv A_TRY B_TRY
if [ "${slot}" = "B" ]; then set part=3; else set part=2; fi
` + adoptBoot

// rugixGrubCfg: Rugix Ctrl's rugpi_bootpart in rugpi/secondary.grubenv and
// rugpi/primary.grubenv (each loaded only when its .sha1 checks, the primary
// last), and the one-shot rugpi_boot_spare in rugpi/boot_spare.grubenv.
const rugixGrubCfg = `set timeout=0
set default=0
set rugpi_bootpart=2
set rugpi_boot_spare=false
if hashsum --hash sha1 --check /rugpi/secondary.grubenv.sha1; then load_env --file /rugpi/secondary.grubenv; else echo "rugix: secondary copy corrupt"; fi
if hashsum --hash sha1 --check /rugpi/primary.grubenv.sha1; then load_env --file /rugpi/primary.grubenv; else echo "rugix: primary copy corrupt"; fi
load_env --file /rugpi/boot_spare.grubenv
set part=${rugpi_bootpart}
if [ "${rugpi_boot_spare}" = "true" ]; then
  set rugpi_boot_spare=false
  save_env --file /rugpi/boot_spare.grubenv rugpi_boot_spare
  if [ "${rugpi_bootpart}" = "2" ]; then set part=3; else set part=2; fi
  echo "rugix: booting the spare partition ${part}"
fi
` + adoptBoot

// adoptESP writes the GRUB image, the script and the factory boot state of
// an adopted integration into the ESP tree.
func (x *X86) adoptESP(tree, boot string) error {
	var cfg string
	files := map[string][]byte{}
	block := func(p string, vars ...string) error {
		b, err := grubenv.Block(vars...)
		files[p] = b
		return err
	}
	mods := diskimage.GrubModules
	switch x.Loader {
	case LoaderMenderGrub:
		cfg = menderGrubCfg
		for _, c := range []string{"1", "2"} {
			d := "grub-mender-grubenv/mender_grubenv" + c
			if err := block(d+"/env", "bootcount", "0", "mender_boot_part", "2", "mender_boot_part_hex", "2", "upgrade_available", "0"); err != nil {
				return err
			}
			if err := block(d+"/lock", "editing", "0"); err != nil {
				return err
			}
			sum := sha256.Sum256(files[d+"/lock"])
			files[d+"/lock.sha256sum"] = []byte(hex.EncodeToString(sum[:]) + "  lock\n")
		}
	case LoaderRAUCGrub:
		cfg = raucGrubCfg
		if err := block("grub/grubenv", "ORDER", "A B", "A_OK", "1", "A_TRY", "0", "B_OK", "0", "B_TRY", "0"); err != nil {
			return err
		}
	case LoaderRugixGrub:
		cfg = rugixGrubCfg
		mods = append(append([]string{}, diskimage.GrubModules...), "hashsum", "gcry_sha1")
		for _, name := range []string{"primary.grubenv", "secondary.grubenv"} {
			if err := block("rugpi/"+name, "rugpi_bootpart", "2"); err != nil {
				return err
			}
			sum := sha1.Sum(files["rugpi/"+name])
			files["rugpi/"+name+".sha1"] = []byte(hex.EncodeToString(sum[:]) + "  /rugpi/" + name + "\n")
		}
		if err := block("rugpi/boot_spare.grubenv", "rugpi_boot_spare", "false"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown loader %q", x.Loader)
	}
	args := append([]string{"-O", "x86_64-efi", "-p", "/EFI/BOOT", "-o", filepath.Join(boot, "BOOTX64.EFI")}, mods...)
	if err := diskimage.Run("grub-mkimage", args...); err != nil {
		return err
	}
	if err := diskimage.WriteFile(filepath.Join(boot, "grub.cfg"), []byte(cfg), 0o644); err != nil {
		return err
	}
	for p, b := range files {
		if err := diskimage.WriteFile(filepath.Join(tree, p), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Boot loaders of the arm64 images that run Mender's or RAUC's U-Boot
// integration (docs/migrating.md), on Debian's qemu_arm64 U-Boot. Their
// scripts below are written for these tests from each project's public
// description of its variables and of the U-Boot features it relies on;
// none of their scripts is copied.
//
// Both projects keep their variables in U-Boot's own redundant environment
// and write it with saveenv. Debian's qemu_arm64 build keeps a single
// environment copy in the second flash bank, which Debian's arm64 kernel
// cannot reach (docs/boot-flows.md, "uboot", saveenv mode), so the scripts
// play U-Boot's redundant environment themselves: the two copies are files
// on the boot partition in U-Boot's redundant layout, loaded at every boot
// (the newer valid copy wins), and e2e_saveenv writes a whole new copy with
// the next flag over the copy that is not current (fatwrite in place, as
// the shipped boot.cmd does). In Linux, libubootenv's fw_printenv and
// fw_setenv read and write the same two files through /etc/fw_env.config,
// which is what `tandem adopt` configures.
const (
	LoaderMenderUBoot = "mender-uboot"
	LoaderRAUCUBoot   = "rauc-uboot"
)

// adoptUBoot is what differs between the two U-Boot integrations.
type adoptUBoot struct {
	flow  string            // the [boot-flow] table's body, as tandem adopt writes it
	vars  string            // the variables the script imports and saves
	env   []string          // the factory environment, name and value pairs
	logic string            // the project's boot logic: sets e2e_part
	files map[string]string // the other system's files in the system image
}

// FwEnvConfig is /etc/fw_env.config of the adopted arm64 images: the two
// environment files on the boot partition (device, offset, size).
var FwEnvConfig = fmt.Sprintf("%[1]s/uboot.env 0x0 %#[2]x\n%[1]s/uboot-redund.env 0x0 %#[2]x\n", Arm64BootDir, Arm64EnvSize)

// RAUCAttempts is boot-attempts-primary of the rauc-uboot image.
const RAUCAttempts = 2

var adoptUBoots = map[string]adoptUBoot{
	// Mender: mender_boot_part (2 or 3) and its hex form are the root
	// partition; U-Boot's boot count (CONFIG_BOOTCOUNT_LIMIT with
	// CONFIG_BOOTCOUNT_ENV) goes up and is saved at every boot only while
	// upgrade_available=1, and above bootlimit (Mender's 1) U-Boot runs
	// altbootcmd instead of bootcmd, which Mender points at
	// mender_altbootcmd: the other partition, upgrade_available=0, saveenv.
	// Debian's build has no CONFIG_BOOTCOUNT_LIMIT, so the script counts.
	LoaderMenderUBoot: {
		flow: "type = \"mender-uboot\"\nbackend = \"fw-setenv\"\nfw-env-config = \"/etc/fw_env.config\"\n" +
			fmt.Sprintf("partitions = { a = %d, b = %d }\n", Arm64PartSysA, Arm64PartSysB),
		vars: "mender_boot_part mender_boot_part_hex upgrade_available bootcount bootlimit",
		env:  []string{"mender_boot_part", "2", "mender_boot_part_hex", "2", "upgrade_available", "0", "bootcount", "0", "bootlimit", "1"},
		logic: `if test -z "${mender_boot_part}"; then setenv mender_boot_part 2; setenv mender_boot_part_hex 2; fi
if test -z "${bootlimit}"; then setenv bootlimit 1; fi
if test -z "${bootcount}"; then setenv bootcount 0; fi
if test "${upgrade_available}" = 1; then
  setexpr bootcount ${bootcount} + 1
  run e2e_saveenv
  if test ${bootcount} -gt ${bootlimit}; then
    echo "mender: bootcount ${bootcount} > bootlimit ${bootlimit}: altbootcmd"
    if test "${mender_boot_part}" = 2; then setenv mender_boot_part 3; setenv mender_boot_part_hex 3; else setenv mender_boot_part 2; setenv mender_boot_part_hex 2; fi
    setenv upgrade_available 0
    run e2e_saveenv
  fi
fi
setenv e2e_part ${mender_boot_part}
`,
		files: map[string]string{
			"/etc/mender/mender.conf":     fmt.Sprintf("{\n  \"RootfsPartA\": \"/dev/vda%d\",\n  \"RootfsPartB\": \"/dev/vda%d\"\n}\n", Arm64PartSysA, Arm64PartSysB),
			"/var/lib/mender/device_type": "device_type=" + Arm64Compatible + "\n",
		},
	},
	// RAUC: BOOT_ORDER names the slots' bootnames in the order they are
	// tried; the first with BOOT_<name>_LEFT > 0 loses one attempt
	// (saveenv) and boots. With none left, every count goes back to 3
	// (RAUC's default), the environment is saved and the board resets.
	LoaderRAUCUBoot: {
		flow: "type = \"rauc-uboot\"\nbackend = \"fw-setenv\"\nfw-env-config = \"/etc/fw_env.config\"\n" +
			fmt.Sprintf("attempts = %d\nnames = { a = \"A\", b = \"B\" }\n", RAUCAttempts),
		vars: "BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT",
		env:  []string{"BOOT_ORDER", "A B", "BOOT_A_LEFT", "3", "BOOT_B_LEFT", "0"},
		logic: `if test -z "${BOOT_ORDER}"; then setenv BOOT_ORDER "A B"; fi
if test -z "${BOOT_A_LEFT}"; then setenv BOOT_A_LEFT 3; fi
if test -z "${BOOT_B_LEFT}"; then setenv BOOT_B_LEFT 3; fi
setenv e2e_part
for s in ${BOOT_ORDER}; do
  if test -z "${e2e_part}"; then
    if test "${s}" = A && test ${BOOT_A_LEFT} -gt 0; then setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1; setenv e2e_part 2; fi
    if test "${s}" = B && test ${BOOT_B_LEFT} -gt 0; then setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1; setenv e2e_part 3; fi
  fi
done
if test -z "${e2e_part}"; then
  echo "rauc: no slot with attempts left: every count back to 3, reset"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
  run e2e_saveenv
  reset
fi
run e2e_saveenv
`,
		files: map[string]string{
			"/etc/rauc/system.conf": fmt.Sprintf(`[system]
compatible=%s
bootloader=uboot
boot-attempts-primary=%d

[slot.rootfs.0]
device=/dev/vda%d
bootname=A

[slot.rootfs.1]
device=/dev/vda%d
bootname=B
`, Arm64Compatible, RAUCAttempts, Arm64PartSysA, Arm64PartSysB),
		},
	},
}

// ubootEnvPair is the start of the adopted U-Boot scripts: it loads both
// environment files, takes the current copy by U-Boot's rule for a
// redundant environment (of the valid copies the newer flag; 0 beats 255;
// equal flags pick the first) and imports the variables %[1]s; it defines
// e2e_saveenv, which exports them into a new copy with the next flag and
// writes it over the other file (which must exist with the right size, so
// that fatwrite rewrites it in place); the copy written becomes current.
// The script prints "E2E-SAVEENV <file>" just before each write.
const ubootEnvPair = `setenv e2e_dev "${devtype} ${devnum}:${distro_bootpart}"
setenv e2e_size %[2]s
setexpr e2e_len ${e2e_size} - 5
setexpr e2e_max ${e2e_size} + 1
setexpr e2e_gap ${e2e_size} * 2
setexpr e2e_a0 ${kernel_addr_r} + 0
setexpr e2e_a1 ${e2e_a0} + ${e2e_gap}
setexpr e2e_c0 ${e2e_a1} + ${e2e_gap}
setexpr e2e_c1 ${e2e_c0} + 1
setexpr e2e_c2 ${e2e_c0} + 2
setexpr e2e_c3 ${e2e_c0} + 3
setexpr e2e_r0 ${e2e_c0} + 4
setexpr e2e_r1 ${e2e_c0} + 5
setexpr e2e_r2 ${e2e_c0} + 6
setexpr e2e_r3 ${e2e_c0} + 7
setexpr e2e_out ${e2e_c0} + 0x100
setenv e2e_check 'setenv e2e_ok 0; setenv e2e_flag 0; setenv e2e_sz 0; if load ${e2e_dev} ${e2e_a} ${e2e_file} ${e2e_max} && itest ${filesize} == ${e2e_size}; then setenv e2e_sz 1; setexpr e2e_d ${e2e_a} + 5; setexpr e2e_fa ${e2e_a} + 4; setexpr.b e2e_flag *${e2e_fa}; crc32 ${e2e_d} ${e2e_len} ${e2e_c0}; cp.b ${e2e_c3} ${e2e_r0} 1; cp.b ${e2e_c2} ${e2e_r1} 1; cp.b ${e2e_c1} ${e2e_r2} 1; cp.b ${e2e_c0} ${e2e_r3} 1; if itest.l *${e2e_a} == *${e2e_r0}; then setenv e2e_ok 1; else echo "e2e: ${e2e_file}: bad CRC"; fi; fi'
setenv e2e_a ${e2e_a0}; setenv e2e_file uboot.env; run e2e_check
setenv e2e_ok0 ${e2e_ok}; setenv e2e_flag0 ${e2e_flag}; setenv e2e_sz0 ${e2e_sz}
setenv e2e_a ${e2e_a1}; setenv e2e_file uboot-redund.env; run e2e_check
setenv e2e_ok1 ${e2e_ok}; setenv e2e_flag1 ${e2e_flag}; setenv e2e_sz1 ${e2e_sz}
setenv e2e_cur
if test ${e2e_ok0} = 1 && test ${e2e_ok1} = 1; then
  setenv e2e_cur 0
  if itest ${e2e_flag0} == 0xff && itest ${e2e_flag1} == 0; then
    setenv e2e_cur 1
  elif itest ${e2e_flag1} -gt ${e2e_flag0}; then
    if itest ${e2e_flag1} != 0xff || itest ${e2e_flag0} != 0; then setenv e2e_cur 1; fi
  fi
elif test ${e2e_ok0} = 1; then
  setenv e2e_cur 0
elif test ${e2e_ok1} = 1; then
  setenv e2e_cur 1
fi
setenv e2e_flag 0
setenv e2e_wfile uboot.env; setenv e2e_wsz ${e2e_sz0}; setenv e2e_other uboot-redund.env
if test "${e2e_cur}" = 0; then
  setexpr e2e_d ${e2e_a0} + 5
  setenv e2e_flag ${e2e_flag0}; setenv e2e_wfile uboot-redund.env; setenv e2e_wsz ${e2e_sz1}; setenv e2e_other uboot.env
elif test "${e2e_cur}" = 1; then
  setexpr e2e_d ${e2e_a1} + 5
  setenv e2e_flag ${e2e_flag1}
else
  echo "e2e: no valid environment copy: the default environment"
fi
if test -n "${e2e_cur}"; then env import -b ${e2e_d} ${e2e_len} %[1]s; fi
setenv e2e_saveenv 'if test "${e2e_wsz}" = 1; then setexpr e2e_d ${e2e_out} + 5; setexpr e2e_fa ${e2e_out} + 4; env export -b -s ${e2e_len} ${e2e_d} %[1]s; crc32 ${e2e_d} ${e2e_len} ${e2e_c0}; cp.b ${e2e_c3} ${e2e_out} 1; setexpr e2e_r ${e2e_out} + 1; cp.b ${e2e_c2} ${e2e_r} 1; setexpr e2e_r ${e2e_out} + 2; cp.b ${e2e_c1} ${e2e_r} 1; setexpr e2e_r ${e2e_out} + 3; cp.b ${e2e_c0} ${e2e_r} 1; setexpr e2e_flag ${e2e_flag} + 1; mw.b ${e2e_fa} ${e2e_flag}; echo "E2E-SAVEENV ${e2e_wfile}"; if fatwrite ${e2e_dev} ${e2e_out} ${e2e_wfile} ${e2e_size}; then setenv e2e_t ${e2e_wfile}; setenv e2e_wfile ${e2e_other}; setenv e2e_other ${e2e_t}; if test -n "${e2e_cur}"; then setenv e2e_wsz 1; fi; else echo "e2e: saveenv failed"; fi; else echo "e2e: ${e2e_wfile} is missing or has the wrong size: not saved"; fi'
`

// adoptUBootScript is the whole script of an adopted arm64 image: the
// environment pair, the project's logic, then boot partition e2e_part as
// its group (tandem.group= only tells the test system which group booted).
func adoptUBootScript(a adoptUBoot, boot string) string {
	return fmt.Sprintf(ubootEnvPair, a.vars, fmt.Sprintf("%#x", Arm64EnvSize)) + a.logic +
		fmt.Sprintf("if test \"${e2e_part}\" = %d; then setenv tandem_group b; else setenv tandem_group a; fi\n", Arm64PartSysB) +
		"setenv tandem_boot '" + boot + "'\nrun tandem_boot\n"
}

// adoptBootTree writes the boot partition of an adopted arm64 image into
// tree: boot.scr and the two environment files holding the factory
// environment (equal flags: the first file is current).
func adoptBootTree(loader, tree, boot string) error {
	a, ok := adoptUBoots[loader]
	if !ok {
		return fmt.Errorf("unknown arm64 loader %q", loader)
	}
	src := filepath.Join(tree, "boot.cmd")
	if err := diskimage.WriteFile(src, []byte(adoptUBootScript(a, boot)), 0o644); err != nil {
		return err
	}
	if err := diskimage.Run("mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-n", loader, "-d", src, filepath.Join(tree, "boot.scr")); err != nil {
		return err
	}
	env := &ubootenv.Env{}
	for i := 0; i+1 < len(a.env); i += 2 {
		if err := env.Set(a.env[i], a.env[i+1]); err != nil {
			return err
		}
	}
	img, err := ubootenv.Encode(env, Arm64EnvSize, true, 1)
	if err != nil {
		return err
	}
	for _, f := range []string{"uboot.env", "uboot-redund.env"} {
		if err := diskimage.WriteFile(filepath.Join(tree, f), img, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// UBootTools returns a tree (under the Debs cache) with fw_printenv and
// fw_setenv of Debian's libubootenv-tool for arm64 in /bin, the shared
// libraries they load, and /var/lock (libubootenv's lock directory) as a
// link to /tmp. Packages are unpacked, never installed.
func UBootTools(d Debs) (string, error) {
	const triplet = "aarch64-linux-gnu"
	tree := filepath.Join(d.Cache, "trees", "libubootenv-arm64")
	if _, err := os.Stat(filepath.Join(tree, ".done")); err == nil {
		return tree, nil
	}
	if err := os.RemoveAll(tree); err != nil {
		return "", err
	}
	libDir := "lib/" + triplet
	want := []struct {
		pkg   string
		files [][2]string // file in the package → file in the tree
	}{
		{"libubootenv-tool", [][2]string{{"usr/bin/fw_printenv", "bin/fw_printenv"}, {"usr/bin/fw_setenv", "bin/fw_setenv"}}},
		{"libubootenv0.1", [][2]string{{"usr/" + libDir + "/libubootenv.so.0", libDir + "/libubootenv.so.0"}}},
		{"zlib1g", [][2]string{{libDir + "/libz.so.1", libDir + "/libz.so.1"}}},
		{"libc6", [][2]string{{libDir + "/libc.so.6", libDir + "/libc.so.6"}, {"lib/ld-linux-aarch64.so.1", "lib/ld-linux-aarch64.so.1"}}},
	}
	for _, w := range want {
		dir, err := d.Extract(w.pkg + ":arm64")
		if err != nil {
			return "", err
		}
		for _, f := range w.files {
			src, err := resolveIn(dir, f[0])
			if err != nil && strings.HasPrefix(f[0], "lib/") {
				src, err = resolveIn(dir, "usr/"+f[0])
			} else if err != nil && strings.HasPrefix(f[0], "usr/lib/") {
				src, err = resolveIn(dir, strings.TrimPrefix(f[0], "usr/"))
			}
			if err != nil {
				return "", fmt.Errorf("libubootenv: %s:arm64: %w", w.pkg, err)
			}
			if err := diskimage.CopyFile(src, filepath.Join(tree, f[1]), 0o755); err != nil {
				return "", err
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(tree, "var"), 0o755); err != nil {
		return "", err
	}
	if err := os.Symlink("/tmp", filepath.Join(tree, "var", "lock")); err != nil {
		return "", err
	}
	return tree, os.WriteFile(filepath.Join(tree, ".done"), nil, 0o644)
}
