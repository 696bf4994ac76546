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

say "Part 2: a signed update. Build two versions of a small image and a signing key"
work=$(mktemp -d /tmp/tandem-demo-build.XXXXXX); dev2=""
trap 'rm -rf "$dev" "$dev2" "$work"' EXIT
( cd "$work" && "$tandem" key generate release )
(tar -cf - -C /usr/share doc 2>/dev/null || true) | head -c 4000000 > "$work/v1.img"; [ -s "$work/v1.img" ] || head -c 4000000 /dev/urandom > "$work/v1.img"
cp "$work/v1.img" "$work/v2.img"
printf 'version 2.0.0 of the demo system\n' | dd of="$work/v2.img" bs=1 seek=100000 conv=notrunc status=none
run "$tandem" bundle create "$work/v2.tandem" --compatible tandem-sim --version 2.0.0 --slot system="$work/v2.img" --key "$work/release.key"
run "$tandem" bundle inspect "$work/v2.tandem"

say "A fresh device that trusts the key runs version 1.0.0 in group a; install 2.0.0 into b"
dev2=$(mktemp -d /tmp/tandem-demo2.XXXXXX)
rmdir "$dev2"
run "$tandem" sim new "$dev2" --boot-flow "$flow" --slot-size 8M --image "$work/v1.img" --trust "$work/release.pub"
run "$tandem" --root "$dev2" update install "$work/v2.tandem" --reboot set
run "$tandem" sim reboot "$dev2"
run "$tandem" --root "$dev2" system commit
run "$tandem" --root "$dev2" system info

say "A bundle signed by another key is refused, and nothing changes"
( cd "$work" && "$tandem" key generate mallory )
run "$tandem" bundle create "$work/evil.tandem" --compatible tandem-sim --version 3.0.0 --slot system="$work/v2.img" --key "$work/mallory.key"
"$tandem" --root "$dev2" update install "$work/evil.tandem" --reboot set || echo "(refused, exit status $?)"

say "Part 3: a delta update from a plain HTTP server"
echo "The device runs 2.0.0. Version 3.0.0 changes a few percent of the image; serve it like a CDN would."
cp "$work/v2.img" "$work/v3.img"
head -c 20000 /dev/urandom | dd of="$work/v3.img" bs=1 seek=150000 conv=notrunc status=none
mkdir -p "$work/www"
run "$tandem" bundle create "$work/www/v3.tandem" --compatible tandem-sim --version 3.0.0 --slot system="$work/v3.img" --key "$work/release.key"
"$tandem" sim serve "$work/www" > "$work/url" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$dev" "$dev2" "$work"' EXIT
for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
url="$(head -1 "$work/url")v3.tandem"
# Group a still holds the factory 1.0.0 image and b holds 2.0.0 (active): tandem reuses what it can.
run "$tandem" --root "$dev2" update install "$url" --reboot set
echo "Bundle size: $(stat -c %s "$work/www/v3.tandem") bytes; the summary above says how much crossed the network."
run "$tandem" sim reboot "$dev2"
run "$tandem" --root "$dev2" system commit

say "Part 4: the local API on a Unix socket (docs/api.md)"
"$tandem" --root "$dev2" serve > "$work/serve.log" 2>&1 &
api=$!
trap 'kill $server $api 2>/dev/null || true; rm -rf "$dev" "$dev2" "$work"' EXIT
sock="$dev2/run/tandem/api.sock"
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
if command -v curl >/dev/null; then
	run curl -s --unix-socket "$sock" http://tandem/v1/last
else
	echo "(curl is not installed: skipping the curl calls)"
fi
echo "While the server runs, the CLI goes through it (and shows in its event stream):"
run "$tandem" --root "$dev2" system commit
kill $api; wait $api 2>/dev/null || true

say "Part 5: the field-service web page, for a fresh demo device"
web=/tmp/tandem-demo-web
rm -rf "$web"; mkdir -p "$web"
"$tandem" sim new "$web/dev" --boot-flow "$flow" --slot-size 8M --image "$work/v1.img" --trust "$work/release.pub" > /dev/null
cp "$work/v2.tandem" "$web/v2.tandem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=tandem-demo \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$web/web.key" -out "$web/web.crt" 2>/dev/null
echo "tandem-demo-password" | "$tandem" --root "$web/dev" serve password
echo "The demo device is in $web/dev; its password is tandem-demo-password; $web/v2.tandem is a signed update for it."
echo "To open its page: $tandem --root $web/dev serve --listen 127.0.0.1:8443 --tls-cert $web/web.crt --tls-key $web/web.key, then browse https://127.0.0.1:8443/ (a self-signed certificate; log in with tandem-demo-password)"
