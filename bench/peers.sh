#!/usr/bin/env bash
# tandem's full install side by side with the verifying peers: the same image,
# signed, verified and written to a file slot by tandem, mender-client (module
# artifact), RAUC (plain bundle), SWUpdate (streamed, zstd) and the unverified
# baseline `zstd -dc | tee >(sha256sum) > slot`. Contenders are interleaved
# (the order rotates every round), every run starts from a fresh sparse slot
# file with the page cache dropped, and ends with `sync`. See
# docs/benchmarks.md, "Full install against the peers".
#
#   sudo bash bench/peers.sh          # root: private mounts, drop_caches, RAUC's loop mount
#
# Environment:
#   BENCH_DIR   work directory (default /var/tmp/tandem-peers); needs ~3 GiB.
#               The image, the peers' artifacts and keys are cached there.
#   N           rounds (default 7); the report gives medians
#   IMAGE_MIB   image size in MiB (default 512)
#   IMAGE_SRC   directory tarred into the image (default /usr)
#   ONLY        space-separated contenders to run (default: all six)
#   LOAD        busy loops to run beside the contenders during the rounds
#               (default 0): the comparison is made under load, and on a
#               machine that is otherwise idle LOAD=4 gives a load of about 4.
#               With LOAD=0 the report adds the whole machine's CPU time
#               during each run (/proc/stat), which also counts the kernel
#               threads a cgroup misses (page-cache write-back, RAUC's loop
#               device): meaningful only when nothing else runs
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/tandem-peers}
N=${N:-7}
IMAGE_MIB=${IMAGE_MIB:-512}
IMAGE_SRC=${IMAGE_SRC:-/usr}
ONLY=${ONLY:-tandem tandem-stored mender rauc swupdate baseline}
LOAD=${LOAD:-0}
TIME=/usr/bin/time
SIZE=$((IMAGE_MIB << 20))

log() { printf '%s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "bench/peers.sh needs root (mount namespaces, drop_caches, RAUC's loop mount)"; exit 1; }

# --- tools (Debian packages) -------------------------------------------------
need=()
for t in zstd:zstd cpio:cpio openssl:openssl rauc:rauc mksquashfs:squashfs-tools swupdate:swupdate \
	mender:mender-client mender-artifact:mender-artifact dbus-daemon:dbus-daemon unshare:util-linux bc:bc; do
	command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[ -x $TIME ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
	# The packaged daemons must not run next to the benchmark's own.
	systemctl disable --now rauc.service swupdate.socket swupdate.service >/dev/null 2>&1 || true
fi

B=$BENCH_DIR
mkdir -p "$B"
cd "$REPO"
log "building bin/tandem"
CGO_ENABLED=0 go build -o bin/tandem ./cmd/tandem
TANDEM=$REPO/bin/tandem
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

# --- inputs (cached) ------------------------------------------------------------
IMAGE=$B/image.img
if [ ! -f "$IMAGE" ] || [ "$(stat -c %s "$IMAGE")" -ne $SIZE ]; then
	log "making $IMAGE: the first $IMAGE_MIB MiB of a tar of $IMAGE_SRC"
	(tar --sort=name --numeric-owner -C "$(dirname "$IMAGE_SRC")" -cf - "$(basename "$IMAGE_SRC")" 2>/dev/null || true) |
		head -c $SIZE >"$IMAGE.tmp"
	truncate -s $SIZE "$IMAGE.tmp"
	mv "$IMAGE.tmp" "$IMAGE"
	rm -f "$B"/image.zst "$B"/bench.*
fi
# stale FILE: FILE is missing or older than the image.
stale() { [ ! -s "$1" ] || [ "$1" -ot "$IMAGE" ]; }
if stale "$B/image.zst"; then
	log "image.zst (zstd -3)"
	zstd -3 -q -f "$IMAGE" -o "$B/image.zst"
fi
# One RSA key and self-signed certificate for RAUC and SWUpdate (CMS), an
# ECDSA key for Mender, an ed25519 key for tandem.
if [ ! -s "$B/cert.pem" ]; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=tandem bench signer" \
		-addext "extendedKeyUsage=emailProtection,codeSigning" -keyout "$B/key.pem" -out "$B/cert.pem" 2>/dev/null
fi
if [ ! -s "$B/mender.pub" ]; then
	openssl ecparam -genkey -name prime256v1 -noout -out "$B/mender.key" 2>/dev/null
	openssl ec -in "$B/mender.key" -pubout -out "$B/mender.pub" 2>/dev/null
fi
[ -s "$B/tandem.key" ] || "$TANDEM" key generate "$B/tandem" >/dev/null

log "tandem bundle (rebuilt every run: the code under test may have changed)"
rm -f "$B/bench.tandem" "$B/bench-stored.tandem"
SOURCE_DATE_EPOCH=1700000000 "$TANDEM" bundle create "$B/bench.tandem" --compatible tandem-sim --version 2.0.0 \
	--slot system="$IMAGE" --key "$B/tandem.key" >/dev/null
# tandem-stored: the same bundle with uncompressed chunks, the like-for-like row for mender's uncompressed artifact
if [[ " $ONLY " == *" tandem-stored "* ]]; then
	SOURCE_DATE_EPOCH=1700000000 "$TANDEM" bundle create "$B/bench-stored.tandem" --compatible tandem-sim --version 2.0.0 \
		--slot system="$IMAGE" --key "$B/tandem.key" --compression stored >/dev/null
fi

if stale "$B/bench.mender"; then
	log "mender artifact (module image, uncompressed, signed with ECDSA P-256)"
	mender-artifact write module-image -T benchslot -t bench-dev -n bench-2 -f "$IMAGE" \
		-o "$B/bench.mender" --compression none -k "$B/mender.key" >/dev/null
fi
mkdir -p "$B/mender/modules" "$B/mender/etc" "$B/mender/data"
# A streaming update module: Download reads the one stream and writes the slot.
cat >"$B/mender/modules/benchslot" <<'EOF'
#!/bin/sh
set -e
case "$1" in
Download)
	s=$(cat "$2/stream-next")
	[ -n "$s" ] || exit 1
	cat "$2/$s" >"$BENCH_SLOT"
	[ -z "$(cat "$2/stream-next")" ]
	;;
NeedsArtifactReboot) echo No ;;
SupportsRollback) echo No ;;
esac
EOF
chmod 755 "$B/mender/modules/benchslot"
printf '{"ArtifactVerifyKey": "%s"}\n' "$B/mender.pub" >"$B/mender/etc/mender.conf"
echo artifact_name=factory >"$B/mender/etc/artifact_info"
echo device_type=bench-dev >"$B/mender/data/device_type"

if stale "$B/bench.raucb"; then
	log "RAUC plain bundle (squashfs, zstd; mksquashfs takes a minute or two)"
	rm -rf "$B/rauc-in" "$B/bench.raucb"
	mkdir -p "$B/rauc-in"
	ln -f "$IMAGE" "$B/rauc-in/rootfs.img"
	printf '[update]\ncompatible=bench-dev\nversion=2.0.0\n\n[bundle]\nformat=plain\n\n[image.rootfs]\nfilename=rootfs.img\n' \
		>"$B/rauc-in/manifest.raucm"
	rauc bundle --cert="$B/cert.pem" --key="$B/key.pem" --mksquashfs-args="-comp zstd" "$B/rauc-in" "$B/bench.raucb" >/dev/null 2>&1
fi
mkdir -p "$B/rauc/data"
truncate -s $SIZE "$B/slot-rauc-a.img"
cat >"$B/rauc/system.conf" <<EOF
[system]
compatible=bench-dev
bootloader=noop
data-directory=$B/rauc/data

[keyring]
path=$B/cert.pem

[slot.rootfs.0]
device=$B/slot-rauc-a.img
type=raw
bootname=A

[slot.rootfs.1]
device=$B/slot-rauc.img
type=raw
bootname=B
EOF

if stale "$B/bench.swu"; then
	log "SWUpdate .swu (zstd image, CMS-signed sw-description, streamed to the raw handler)"
	mkdir -p "$B/swu-in"
	ln -f "$B/image.zst" "$B/swu-in/image.zst"
	cat >"$B/swu-in/sw-description" <<EOF
software =
{
	version = "2.0.0";
	description = "tandem peer benchmark";
	hardware-compatibility: [ "1.0" ];
	images: (
		{
			filename = "image.zst";
			device = "$B/slot-swu.img";
			type = "raw";
			compressed = "zstd";
			installed-directly = true;
			sha256 = "$(sha256sum "$B/image.zst" | cut -d' ' -f1)";
		}
	);
}
EOF
	openssl cms -sign -in "$B/swu-in/sw-description" -out "$B/swu-in/sw-description.sig" -signer "$B/cert.pem" \
		-inkey "$B/key.pem" -outform DER -nosmimecap -binary
	(cd "$B/swu-in" && printf '%s\n' sw-description sw-description.sig image.zst | cpio -o -H crc 2>/dev/null) >"$B/bench.swu.tmp"
	mv "$B/bench.swu.tmp" "$B/bench.swu"
fi
mkdir -p "$B/swu-tmp"

# tandem's device: made by `tandem sim new`, then without the simulator's
# marker, so that it is a plain device under a root prefix: the real file
# layer with a real fsync. (On a simulated device every slot write goes
# through the power-cut model, which reads the whole slot at open and again
# at fsync and keeps it in memory: that measures the simulator.)
rm -rf "$B/dev"
"$TANDEM" sim new "$B/dev" --boot-flow grub --slot-size "${IMAGE_MIB}M" --trust "$B/tandem.pub" >/dev/null
rm "$B/dev/.tandem-sim.json"

# --- RAUC's service on a private session bus ---------------------------------------
# CPU time is counted by a cpuacct cgroup when the kernel has one (v1): it
# also counts the processes a contender forks and does not wait for
# (SWUpdate forks a helper), which rusage misses. RAUC's service joins it, so
# its work during a run counts too. Without the cgroup: the command's rusage
# plus the service's /proc times.
CG=
if [ -d /sys/fs/cgroup/cpuacct ] && mkdir "/sys/fs/cgroup/cpuacct/tandem-bench.$$" 2>/dev/null; then
	CG=/sys/fs/cgroup/cpuacct/tandem-bench.$$
fi
export CG
DBUS_PID= RAUC_PID=
BUSY=()
cleanup() {
	for p in "${BUSY[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -z "$RAUC_PID" ] || { kill "$RAUC_PID" 2>/dev/null && wait "$RAUC_PID" 2>/dev/null; } || true
	[ -z "$DBUS_PID" ] || kill "$DBUS_PID" 2>/dev/null || true
	[ -z "$CG" ] || { sleep 0.2; rmdir "$CG" 2>/dev/null; } || true
}
trap cleanup EXIT
if [[ " $ONLY " == *" rauc "* ]]; then
	{ read -r DBUS_SESSION_BUS_ADDRESS; read -r DBUS_PID; } < <(dbus-daemon --session --fork --print-address=1 --print-pid=1)
	export DBUS_SESSION_BUS_ADDRESS DBUS_STARTER_BUS_TYPE=session
	rauc service --conf="$B/rauc/system.conf" --override-boot-slot=A >"$B/rauc/service.log" 2>&1 &
	RAUC_PID=$!
	[ -z "$CG" ] || echo "$RAUC_PID" >"$CG/tasks"
	for _ in $(seq 50); do rauc status >/dev/null 2>&1 && break; sleep 0.1; done
fi

# --- helpers ---------------------------------------------------------------------
now() { date +%s.%N; }
TCK=$(getconf CLK_TCK)
# cpu_of PID: user+sys seconds the process used so far.
cpu_of() { awk -v t="$TCK" '{sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / t}' "/proc/$1/stat"; }
fresh() { rm -f "$1"; truncate -s $SIZE "$1"; sync; echo 3 >/proc/sys/vm/drop_caches; }
R=$B/results
rm -rf "$R"
mkdir -p "$R/time"

# busy: CPU seconds the whole machine spent so far outside idle and I/O wait
# (user, nice, system, irq, softirq, steal of /proc/stat's cpu line).
busy() { awk -v t="$TCK" '/^cpu / {printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / t}' /proc/stat; }

# kthreads FILE: each kernel thread's (children of kthreadd: page-cache
# write-back, block I/O workers, the loop device's) pid and CPU ticks so far.
kthreads() {
	awk 'FNR == 1 { pid = $1; sub(/^.*\) /, ""); split($0, f, " "); if (f[2] == 2) print pid, f[12] + f[13] }' \
		/proc/[0-9]*/stat 2>/dev/null >"$1" || true # a process that exits before awk opens its stat: awk exits 2
}
# kdelta BEFORE AFTER: CPU seconds the kernel threads used in between (a
# thread that started in between counts whole; one that exited is lost).
kdelta() { awk -v t="$TCK" 'NR == FNR { a[$1] = $2; next } { s += $2 - a[$1] } END { printf "%.2f\n", s / t }' "$1" "$2"; }

# run NAME ROUND SLOT CMD...: one timed run into a fresh SLOT, then sync; writes
# "wall cpu maxrss_kib rusage_cpu machine_cpu kthreads_cpu" to $R/NAME.ROUND and
# checks the slot.
run() {
	local name=$1 round=$2 slot=$3 t0 t1 c0=0 c1=0 g0=0 g1=0 m0 m1
	shift 3
	fresh "$slot"
	[ "$name" != rauc ] || c0=$(cpu_of "$RAUC_PID")
	[ -z "$CG" ] || g0=$(cat "$CG/cpuacct.usage")
	m0=$(busy)
	kthreads "$R/k0"
	t0=$(now)
	if ! $TIME -f '%U %S %M' -o "$R/time/$name.$round" bash -c '[ -z "$CG" ] || echo $$ >"$CG/tasks"; "$@" >/dev/null 2>"$0" || exit; sync' \
		"$R/time/$name.$round.err" "$@"; then
		log "$name failed (round $round):"
		tail -5 "$R/time/$name.$round.err" >&2
		exit 1
	fi
	t1=$(now)
	m1=$(busy)
	kthreads "$R/k1"
	[ "$name" != rauc ] || c1=$(cpu_of "$RAUC_PID")
	[ -z "$CG" ] || g1=$(cat "$CG/cpuacct.usage")
	awk -v w="$(echo "$t1 - $t0" | bc -l)" -v extra="$(echo "$c1 - $c0" | bc -l)" -v cg="$(echo "($g1 - $g0) / 10^9" | bc -l)" \
		-v m="$(echo "$m1 - $m0" | bc -l)" -v k="$(kdelta "$R/k0" "$R/k1")" \
		'{cpu = $1 + $2 + extra; if (cg > 0) cpu = cg; printf "%.3f %.2f %d %.2f %.2f %.2f\n", w, cpu, $3, $1 + $2 + extra, m, k}' \
		"$R/time/$name.$round" >"$R/$name.$round"
	cmp -s "$IMAGE" "$slot" || { log "$name: the slot differs from the image (round $round)"; cat "$R/time/$name.$round.err" >&2; exit 1; }
}

contender() {
	local round=$2
	case $1 in
	tandem) run tandem "$round" "$B/dev/slots/system-b.img" "$TANDEM" --root "$B/dev" update install "$B/bench.tandem" --json ;;
	tandem-stored) run tandem-stored "$round" "$B/dev/slots/system-b.img" "$TANDEM" --root "$B/dev" update install "$B/bench-stored.tandem" --json ;;
	mender)
		# A private mount namespace puts the module and /etc/mender in place.
		run mender "$round" "$B/slot-mender.img" unshare -m --propagation private sh -c '
			mount --bind "$1/mender/modules" /usr/share/mender/modules/v3
			mount --bind "$1/mender/etc" /etc/mender
			rm -rf "$1/mender/data/"mender-store* "$1/mender/data/modules"
			BENCH_SLOT=$1/slot-mender.img exec mender --no-syslog -l warning -c "$1/mender/etc/mender.conf" \
				-b "$1/mender/etc/none.conf" -d "$1/mender/data" install "$1/bench.mender"' sh "$B" ;;
	rauc) run rauc "$round" "$B/slot-rauc.img" rauc install "$B/bench.raucb" ;;
	swupdate)
		run swupdate "$round" "$B/slot-swu.img" env TMPDIR="$B/swu-tmp" swupdate -l 3 -k "$B/cert.pem" -H tandem:1.0 -m -M \
			-i "$B/bench.swu" ;;
	baseline)
		run baseline "$round" "$B/slot-base.img" bash -c 'zstd -dc "$1" | tee >(sha256sum >/dev/null) >"$2"' _ \
			"$B/image.zst" "$B/slot-base.img" ;;
	esac
}

# --- rounds ----------------------------------------------------------------------
for _ in $(seq "$LOAD"); do
	sh -c 'while :; do :; done' &
	BUSY+=($!)
done
read -r -a names <<<"$ONLY"
k=${#names[@]}
for i in $(seq "$N"); do
	order=()
	for j in $(seq 0 $((k - 1))); do order+=("${names[$(((i - 1 + j) % k))]}"); done
	log "round $i/$N: ${order[*]} (load $(cut -d' ' -f1 /proc/loadavg))"
	for c in "${order[@]}"; do contender "$c" "$i"; done
done
for p in "${BUSY[@]}"; do kill "$p" 2>/dev/null || true; done
BUSY=()
rm -f "$B"/slot-*.img "$B/dev/slots/system-b.img"

# --- report ----------------------------------------------------------------------
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
med() { awk -v c="$2" '{print $c}' "$R/$1".* | median; }
range() { awk -v c="$2" '{print $c}' "$R/$1".* | sort -g | awk 'NR==1 {a=$1} {b=$1} END {print a "–" b}'; }
declare -A what=(
	[tandem]="signature over the header before any payload byte; every chunk's stored bytes against their signed SHA-256 before they are decoded, the decoded size and zstd checksum before it is written"
	[tandem-stored]="as tandem, with each chunk's SHA-256 over its uncompressed bytes"
	[mender]="signature over the manifest; the payload's SHA-256 at the end of the stream, after the module wrote it"
	[rauc]="CMS signature over the whole bundle before mounting it; the image is not hashed again while copied"
	[swupdate]="CMS signature over sw-description; the artifact's SHA-256 (of its compressed bytes) at the end, after writing"
	[baseline]="nothing (sha256sum computes a digest nobody compares)")
declare -A label=(
	[tandem]="**tandem** (\`update install\`, bundle format 3)"
	[tandem-stored]="tandem, the same bundle with \`--compression stored\`"
	[mender]="mender-client $(dpkg-query -W -f='${Version}' mender-client 2>/dev/null | cut -d+ -f1), module artifact, uncompressed"
	[rauc]="RAUC $(dpkg-query -W -f='${Version}' rauc 2>/dev/null | cut -d- -f1), plain bundle, squashfs zstd"
	[swupdate]="SWUpdate $(dpkg-query -W -f='${Version}' swupdate 2>/dev/null | cut -d+ -f1), zstd, streamed"
	[baseline]="\`zstd -dc \\| tee >(sha256sum) > slot\`")
gb=$(echo "$SIZE / 1000000000" | bc -l)
cat <<EOF
## Results ($(date -u +%Y-%m-%dT%H:%MZ), N=$N, medians)

Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(uname -sr),
$(go version | cut -d' ' -f3), load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg)$([ "$LOAD" -eq 0 ] || echo ", with $LOAD busy loops of the benchmark's own (LOAD=$LOAD)").
Image: $IMAGE_MIB MiB (first $SIZE bytes of \`tar --sort=name -C / -cf - ${IMAGE_SRC#/}\`); every run: fresh sparse slot,
\`sync\`, \`drop_caches\`, the command, \`sync\` (in the wall time). CPU: $([ -n "$CG" ] && echo "a cpuacct cgroup around each run (RAUC's service in it)" || echo "rusage of the command, plus RAUC's service's /proc times").

| contender | file | wall s (range) | CPU s user+sys (range) | CPU ns per installed byte | peak RSS MiB | what it verifies |
|---|---:|---:|---:|---:|---:|---|
EOF
for c in "${names[@]}"; do
	case $c in
	tandem) f=$B/bench.tandem ;; tandem-stored) f=$B/bench-stored.tandem ;; mender) f=$B/bench.mender ;; rauc) f=$B/bench.raucb ;;
	swupdate) f=$B/bench.swu ;; baseline) f=$B/image.zst ;;
	esac
	printf '| %s | %s MB | %.2f (%s) | %.2f (%s) | %.2f | %d | %s |\n' "${label[$c]}" \
		"$(echo "$(stat -c %s "$f") / 1000000" | bc)" "$(med "$c" 1)" "$(range "$c" 1)" "$(med "$c" 2)" "$(range "$c" 2)" \
		"$(echo "$(med "$c" 2) / $gb" | bc -l)" "$(($(awk '{print $3}' "$R/$c".* | sort -n | tail -1) / 1024))" "${what[$c]}"
done
if [[ " $ONLY " == *" tandem "* ]]; then
	echo
	tw=$(med tandem 1) tc=$(med tandem 2)
	for c in mender rauc swupdate; do
		[[ " $ONLY " == *" $c "* ]] || continue
		printf -- '- tandem / %s: wall %.2f, CPU %.2f\n' "$c" "$(echo "$tw / $(med "$c" 1)" | bc -l)" "$(echo "$tc / $(med "$c" 2)" | bc -l)"
	done
fi
# The cgroup's CPU plus the kernel threads' during the run: the work a
# buffered writer leaves to write-back counted for every contender alike.
echo
echo "Kernel threads' CPU during each run (page-cache write-back, I/O workers; other activity of the machine"
echo "adds a little to every contender), and the cgroup's CPU plus it, medians:"
echo
for c in "${names[@]}"; do
	awk '{print $2 + $6}' "$R/$c".* | median >"$R/total.$c"
	printf -- '- %s: kernel threads %.2f s (%s), CPU + kernel threads %.2f s\n' "$c" "$(med "$c" 6)" "$(range "$c" 6)" "$(cat "$R/total.$c")"
done
if [[ " $ONLY " == *" tandem "* ]]; then
	for c in mender rauc swupdate; do
		[[ " $ONLY " == *" $c "* ]] || continue
		printf -- '- tandem / %s, CPU + kernel threads: %.2f\n' "$c" "$(echo "$(cat "$R/total.tandem") / $(cat "$R/total.$c")" | bc -l)"
	done
fi
if [ "$LOAD" -eq 0 ]; then
	# The cgroup counts what runs in it; page-cache write-back (kernel
	# threads, after a buffered write) and the loop device's worker do not.
	echo
	echo "Whole-machine CPU during each run (every process and kernel thread, from /proc/stat: meaningful on an"
	echo "otherwise idle machine only; load average before: $LOAD0), medians:"
	echo
	for c in "${names[@]}"; do printf -- '- %s: %.2f s (%s)\n' "$c" "$(med "$c" 5)" "$(range "$c" 5)"; done
	if [[ " $ONLY " == *" tandem "* ]]; then
		for c in mender rauc swupdate; do
			[[ " $ONLY " == *" $c "* ]] || continue
			printf -- '- tandem / %s, whole-machine CPU: %.2f\n' "$c" "$(echo "$(med tandem 5) / $(med "$c" 5)" | bc -l)"
		done
	fi
fi
if [[ " $ONLY " == *" tandem-stored "* && " $ONLY " == *" mender "* ]]; then
	printf -- '- tandem-stored / mender (both uncompressed): wall %.2f, CPU %.2f\n' \
		"$(echo "$(med tandem-stored 1) / $(med mender 1)" | bc -l)" "$(echo "$(med tandem-stored 2) / $(med mender 2)" | bc -l)"
fi
echo
echo "Per round (wall s / CPU s), in the order run:"
echo
printf '| round |'; for c in "${names[@]}"; do printf ' %s |' "$c"; done; echo
printf '|---|'; for _ in "${names[@]}"; do printf -- '---:|'; done; echo
for i in $(seq "$N"); do
	printf '| %d |' "$i"
	for c in "${names[@]}"; do printf ' %s / %s |' "$(awk '{print $1}' "$R/$c.$i")" "$(awk '{print $2}' "$R/$c.$i")"; done
	echo
done
