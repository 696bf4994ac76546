#!/bin/bash
# make demo: one simulated device walks through try → reboot → commit → rollback.
set -euo pipefail
tandem=$(realpath "${1:-bin/tandem}")
dev=$(mktemp -d /tmp/tandem-demo.XXXXXX)
trap 'rm -rf "$dev"' EXIT
flow=${FLOW:-grub}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
group() { "$tandem" --root "$dev" system info --json | sed -n "s/.*\"$1\": \"\(.*\)\".*/\1/p"; }

say "A new simulated device with the $flow boot flow, in $dev"
run "$tandem" sim new "$dev" --boot-flow "$flow" --slot-size 8M
run "$tandem" --root "$dev" system info

say "Ask the boot loader to start the spare group b once, on trial, and reboot"
run "$tandem" --root "$dev" system reboot --spare
run "$tandem" sim reboot "$dev"
echo "The device now runs group $(group activeGroup); the default is still $(group defaultGroup)."
run "$tandem" --root "$dev" system info

say "The new system works: commit it, so that b stays the default"
run "$tandem" --root "$dev" system commit
run "$tandem" sim reboot "$dev"
echo "After a normal reboot the device runs $(group activeGroup) (default $(group defaultGroup))."

say "Try group a again, but this time the system does not commit before the next reboot"
run "$tandem" --root "$dev" system reboot --spare
run "$tandem" sim reboot "$dev"
echo "On trial in group $(group activeGroup) ... and it reboots without committing:"
run "$tandem" sim reboot "$dev"
echo "Rolled back: the device runs $(group activeGroup) again, the default it committed before."
run "$tandem" --root "$dev" system info

say "Done. The same walk works with FLOW=uboot, rpi-tryboot, systemd-boot or custom."
