#!/usr/bin/env bash
# Patch apply speed and memory, before and after a change: installs by patch
# (tandem update install URL, the patch published next to the bundle) with
# two tandem binaries, interleaved round by round on the same machine, with
# `xdelta3 -d` of the same pair as the yardstick when its patch is there.
# It reuses what bench/delta.sh made in BENCH_DIR (the images, the bundles,
# the tandem patches, the key and, if made, the .xd3 patches): run that
# first (or at least up to its patches). See docs/benchmarks-delta.md.
#
#   OLD=/path/to/old/tandem bash bench/patch-apply.sh
#
# Environment:
#   OLD        the tandem binary to compare with (required)
#   NEW        the other one (default: built from this repository)
#   PAIRS      "k2:k1 v2:v1" (new image:source image), default both
#   N          rounds (default 2)
#   XDELTA3    0: no xdelta3 rounds (default 1: when $BENCH_DIR/www/NEW.xd3 exists)
#   BENCH_DIR  bench/delta.sh's work directory (default /var/tmp/tandem-bench-delta)
#   DROP       1: drop the page cache before each timed run (root), so that the
#              source slot is read from the disk as on a device after boot
#              (default 0: the source is in the page cache, just written)
#
# Wall time is until the slot is on disk (tandem fsyncs; a sync is timed for
# xdelta3), MB/s is the new image's size over it, CPU and peak RSS are
# /usr/bin/time's %U + %S and %M (for xdelta3's pipeline: the shell's
# children's CPU, the largest process's RSS). The device is a `tandem sim new` directory without its
# simulator marker (the simulator keeps slots in memory), as in bench/delta.sh.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${BENCH_DIR:-/var/tmp/tandem-bench-delta}
W=$B/www
N=${N:-2}
PAIRS=${PAIRS:-"k2:k1 v2:v1"}
: "${OLD:?set OLD to the tandem binary to compare with}"
if [ -z "${NEW:-}" ]; then
	NEW=$B/tandem-new
	(cd "$REPO" && CGO_ENABLED=0 go build -o "$NEW" ./cmd/tandem)
fi
for v in $PAIRS; do
	[ -f "$W/${v%:*}.tandem.patches/version-1.0.0.tpatch" ] || { echo "no patch for ${v%:*}: run bench/delta.sh first" >&2; exit 1; }
done

. "$REPO/bench/nginx.sh"
DEV=$B/dev-apply OUT=$B/apply-out.img
trap '[ -z "${NGINX_PID:-}" ] || { kill $NGINX_PID 2>/dev/null; wait $NGINX_PID 2>/dev/null; } || true; rm -rf "$DEV" "$OUT"' EXIT
start_nginx "$B/nginx-apply" "$W" "${PAIRS%%:*}.tandem" || exit 1

# timed LABEL CMD...: wall time (s) and peak RSS (KiB) of CMD, then a sync.
timed() {
	local label=$1 t0 t1
	shift
	sync
	[ "${DROP:-0}" != 1 ] || echo 3 >/proc/sys/vm/drop_caches
	t0=$EPOCHREALTIME
	/usr/bin/time -f '%M %U %S' -o "$B/apply.rss" "$@" >"$B/apply.out" 2>&1
	sync
	t1=$EPOCHREALTIME
	printf '%s %.3f %s %s\n' "$label" "$(echo "$t1 - $t0" | bc -l)" "$(cut -d' ' -f1 "$B/apply.rss")" \
		"$(awk '{printf "%.2f", $2 + $3}' "$B/apply.rss")"
}
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for pair in $PAIRS; do
	v=${pair%:*} s=${pair#*:}
	size=$(stat -c %s "$B/$v.ext4")
	for i in $(seq "$N"); do
		for which in old new; do
			bin=$OLD
			[ $which = old ] || bin=$NEW
			rm -rf "$DEV"
			"$bin" sim new "$DEV" --boot-flow grub --slot-size "$(stat -c %s "$B/$s.ext4")" --image "$B/$s.ext4" \
				--trust "$B/key.pub" >/dev/null
			rm "$DEV/.tandem-sim.json"
			line=$(timed "$v $which" "$bin" --root "$DEV" update install "$BASE/$v.tandem" --json)
			grep -q '"method":"patch"' "$B/apply.out" || { echo "$v $which: not installed by patch" >&2; tail -3 "$B/apply.out" >&2; exit 1; }
			cmp -s -n "$size" "$DEV/slots/system-b.img" "$B/$v.ext4" || { echo "$v $which: the slot differs from $v.ext4" >&2; exit 1; }
			echo "$line $(grep -o '"requests":[0-9]*' "$B/apply.out" | tail -1 | cut -d: -f2) $(cut -d' ' -f1 /proc/loadavg)"
		done
		if [ "${XDELTA3:-1}" = 1 ] && [ -f "$W/$v.xd3" ]; then
			rm -f "$OUT"
			line=$(timed "$v xdelta3" sh -c "curl -fsS '$BASE/$v.xd3' | xdelta3 -d -c -s '$B/$s.ext4' >'$OUT'")
			cmp -s "$OUT" "$B/$v.ext4" || { echo "$v xdelta3: the result differs" >&2; exit 1; }
			echo "$line 1 $(cut -d' ' -f1 /proc/loadavg)"
		fi
	done
done | awk -v sizes="$(for p in $PAIRS; do echo "${p%:*}=$(stat -c %s "$B/${p%:*}.ext4")"; done)" '
	BEGIN { n = split(sizes, a, "\n"); for (i = 1; i <= n; i++) { split(a[i], kv, "="); size[kv[1]] = kv[2] }
		print "| pair | binary | wall s | MB/s of output | CPU s (user+sys) | peak RSS MiB | requests | load |"
		print "|---|---|---:|---:|---:|---:|---:|---:|" }
	/^#/ { print; next }
	{ printf "| %s | %s | %.2f | %.0f | %.2f | %.1f | %s | %s |\n", $1, $2, $3, size[$1] / $3 / 1e6, $5, $4 / 1024, $6, $7 }'
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
