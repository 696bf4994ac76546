#!/bin/bash
# Installs the Debian packages tandem's tests drive, only when missing.
set -euo pipefail
pkgs=(grub-common u-boot-tools libubootenv-tool casync openssl nginx-light mosquitto mender-client mender-artifact swupdate)
# Real-boot tests (e2e/, docs/testing.md): QEMU, firmware, GRUB's EFI modules and the image tools.
# Guest-only packages (kernel, busybox-static, systemd-boot-efi) are not installed: the tests fetch
# them with apt-get download into /var/tmp/tandem-e2e/debs and unpack them with dpkg-deb -x.
pkgs+=(qemu-system-x86 ovmf grub-efi-amd64-bin dosfstools mtools e2fsprogs fdisk)
# State (internal/state, internal/gpt): sgdisk -v checks a grown partition table; xfs and btrfs
# loop mounts test the copy-on-write snapshots (reflinks) and the growing of their file systems.
pkgs+=(gdisk xfsprogs btrfs-progs)
# tandem image build (internal/image, docs/image.md): fakeroot keeps the root filesystem's owners,
# zstd unpacks .tar.zst, its systemd-boot layout takes the host's systemd-bootx64.efi; the other
# tools (e2fsprogs, dosfstools, mtools, fdisk, grub, u-boot-tools) are above.
pkgs+=(fakeroot zstd systemd-boot-efi)
# The U-Boot test boots Debian's qemu_arm64 U-Boot; its arm64 guest packages are fetched the same
# way (apt-get download pkg:arm64), which needs arm64 as a foreign dpkg architecture.
pkgs+=(qemu-system-arm u-boot-qemu)
# Packaging (tools/debpkg, docs/packages.md): lintian checks the .deb files, systemd's
# systemd-analyze verifies the units as installed, deb-systemd-helper (init-system-helpers,
# essential) runs their maintainer scripts; dpkg-deb is part of dpkg.
pkgs+=(lintian systemd)
# The field-service web page is tested in a real headless browser (internal/api, chromedp).
pkgs+=(chromium)
add_arm64=0
dpkg --print-foreign-architectures | grep -qx arm64 || add_arm64=1
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ] && [ "$add_arm64" -eq 0 ]; then
	echo "deps: all Debian packages present (${pkgs[*]})"
	exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
	sudo=sudo
fi
if [ "$add_arm64" -eq 1 ]; then
	echo "deps: adding the arm64 dpkg architecture (for apt-get download of the arm64 test guest)"
	$sudo dpkg --add-architecture arm64
fi
[ ${#missing[@]} -eq 0 ] || echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Tests start their own servers (nginx, mosquitto) on free loopback ports with their own
# configuration: keep the packages from starting their daemons (mosquitto would hold
# port 1883) with a temporary policy-rc.d, unless the system already has one.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# installed by tandem scripts/install-deps.sh while it runs apt-get\nexit 101\n' | $sudo tee "$policy" >/dev/null
	$sudo chmod 755 "$policy"
	trap '$sudo rm -f "$policy"' EXIT
fi
$sudo apt-get update -q || true
if [ ${#missing[@]} -gt 0 ]; then
	$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# mender-client enables its daemon (mender-client.service) for the next boot; the tests run
# the client in standalone mode only, so mask the daemon when this script installed it.
if [[ " ${missing[*]} " == *" mender-client "* ]]; then
	$sudo systemctl mask mender-client.service >/dev/null 2>&1 ||
		$sudo ln -sf /dev/null /etc/systemd/system/mender-client.service
fi
# swupdate is only the reference hawkBit client of a test (run in the foreground with its own
# arguments): its packaged services must not run next to it (they would hold its control
# socket /tmp/sockinstctrl), so disable them when this script installed it.
if [[ " ${missing[*]} " == *" swupdate "* ]]; then
	$sudo systemctl disable --now swupdate.socket swupdate.service >/dev/null 2>&1 || true
fi
