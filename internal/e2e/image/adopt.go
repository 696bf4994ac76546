package image

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"

	"github.com/tandem-ota/tandem/internal/bootenv/grubenv"
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
	mods := GrubModules
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
		mods = append(append([]string{}, GrubModules...), "hashsum", "gcry_sha1")
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
	if err := run("grub-mkimage", args...); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(boot, "grub.cfg"), []byte(cfg), 0o644); err != nil {
		return err
	}
	for p, b := range files {
		if err := writeFile(filepath.Join(tree, p), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
