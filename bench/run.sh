#!/usr/bin/env bash
# tandem performance benchmark: the whole CLI as a process, on real data, side
# by side with its baseline in the same run. See docs/benchmarks.md.
#
#   bash bench/run.sh            # from the repository root (or anywhere)
#
# Environment:
#   BENCH_DIR   work directory (default /var/tmp/tandem-bench); needs ~4 GiB.
#               The 1 GiB image, image.zst and the key are cached there.
#   N           rounds of each alternating comparison (default 3)
#   WARMUP      unmeasured rounds of baseline and install first (default 1)
#   IMAGE_SRC   directory tarred into the image (default /usr)
#
# Idempotent: every run rebuilds bin/tandem, the bundle, the casync store and
# the simulated device; only the image, image.zst and the key are reused.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/tandem-bench}
N=${N:-3}
WARMUP=${WARMUP:-1}
IMAGE_SRC=${IMAGE_SRC:-/usr}
IMAGE_SIZE=$((1 << 30))
TIME=/usr/bin/time

log() { printf '%s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------
need=()
command -v zstd >/dev/null || need+=(zstd)
command -v casync >/dev/null || need+=(casync)
[ -x $TIME ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2; }
fi

mkdir -p "$BENCH_DIR"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
cd "$REPO"
log "building bin/tandem"
CGO_ENABLED=0 go build -o bin/tandem ./cmd/tandem
TANDEM=$REPO/bin/tandem

# --- inputs (cached) -------------------------------------------------------
B=$BENCH_DIR
IMAGE=$B/image.img
if [ ! -f "$IMAGE" ] || [ "$(stat -c %s "$IMAGE")" -ne $IMAGE_SIZE ]; then
	log "making $IMAGE: the first 1 GiB of a tar of $IMAGE_SRC"
	# tar dies of SIGPIPE once head has its 1 GiB; pad if the tree is smaller.
	(tar --sort=name --numeric-owner -C "$(dirname "$IMAGE_SRC")" -cf - "$(basename "$IMAGE_SRC")" 2>/dev/null || true) |
		head -c $IMAGE_SIZE >"$IMAGE.tmp"
	truncate -s $IMAGE_SIZE "$IMAGE.tmp"
	mv "$IMAGE.tmp" "$IMAGE"
	rm -f "$B/image.zst"
fi
if [ ! -f "$B/image.zst" ]; then
	log "making image.zst (zstd -3)"
	zstd -3 -q -f "$IMAGE" -o "$B/image.zst.tmp"
	mv "$B/image.zst.tmp" "$B/image.zst"
fi
if [ ! -f "$B/key.key" ] || [ ! -f "$B/key.pub" ]; then
	rm -f "$B/key.key" "$B/key.pub"
	"$TANDEM" key generate "$B/key" >/dev/null
fi

# --- helpers ---------------------------------------------------------------
now() { date +%s.%N; }
# timed OUT CMD...: runs CMD under /usr/bin/time -v (stdout to /dev/null),
# writes "wall user sys maxrss_kib" to OUT. Wall is measured outside time(1).
timed() {
	local out=$1 t0 t1
	shift
	t0=$(now)
	$TIME -v -o "$R/time/${out##*/}" "$@" >/dev/null
	t1=$(now)
	awk -v w="$(echo "$t1 - $t0" | bc -l)" -F': ' '
		/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {r=$2}
		END {printf "%.3f %.2f %.2f %d\n", w, u, s, r}' "$R/time/${out##*/}" >"$out"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v c="$1" '{print $c}' "${@:2}"; }
# fresh_slot FILE: every slot starts as a new sparse file of the image size.
fresh_slot() { rm -f "$1"; truncate -s $IMAGE_SIZE "$1"; }
R=$B/results
rm -rf "$R"
mkdir -p "$R/time"

# --- bundle creation vs casync make ------------------------------------------
BUNDLE=$B/bundle.tandem
STORE=$B/casync.castr
cat "$IMAGE" >/dev/null # page cache: both read a warm file
for i in $(seq "$N"); do
	log "round $i/$N: bundle create vs casync make"
	rm -f "$BUNDLE"
	timed "$R/create.$i" env SOURCE_DATE_EPOCH=1700000000 "$TANDEM" bundle create "$BUNDLE" \
		--compatible tandem-sim --version 2.0.0 --slot system="$IMAGE" --key "$B/key.key"
	rm -rf "$STORE" "$B/x.caibx"
	timed "$R/casync.$i" casync make --store="$STORE" --chunk-size=16384:65536:262144 \
		--compression=zstd --digest=sha256 "$B/x.caibx" "$IMAGE"
done

# --- install vs baseline ---------------------------------------------------
DEV=$B/dev
rm -rf "$DEV"
"$TANDEM" sim new "$DEV" --boot-flow grub --slot-size 1G --trust "$B/key.pub" >/dev/null
# A plain device under a root prefix (real file layer, real fsync), not a
# simulated one: the simulator's power-cut model reads every slot it opens
# and keeps it in memory (docs/benchmarks.md, "Full install against the peers").
rm "$DEV/.tandem-sim.json"
SLOT=$DEV/slots/system-b.img
BASE_SLOT=$B/baseline-slot.img
cat "$B/image.zst" "$BUNDLE" >/dev/null
# Both start from a fresh sparse slot file of 1 GiB (the baseline's ">"
# truncates it to 0 first, tandem writes into it): blocks are allocated as
# written in both. Warm-up rounds are run the same way and not counted.
for i in $(seq $((1 - WARMUP)) "$N"); do
	tag=$i
	[ "$i" -ge 1 ] || tag=warmup$((1 - i))
	log "round $tag/$N: baseline vs tandem update install"
	fresh_slot "$BASE_SLOT"
	sync
	timed "$R/base.$tag" bash -c 'zstd -dc "$1" | tee >(sha256sum >/dev/null) >"$2"; sync' _ "$B/image.zst" "$BASE_SLOT"
	fresh_slot "$BASE_SLOT"
	sync
	timed "$R/plain.$tag" bash -c 'zstd -dc "$1" >"$2"; sync' _ "$B/image.zst" "$BASE_SLOT"
	fresh_slot "$SLOT"
	sync
	timed "$R/install.$tag" "$TANDEM" --root "$DEV" update install "$BUNDLE" --json
	cmp -s "$IMAGE" "$SLOT" || { log "installed slot differs from the image"; exit 1; }
done
mkdir -p "$R/warmup"
mv "$R"/*.warmup* "$R/warmup/" 2>/dev/null || true
cmp -s "$IMAGE" "$BASE_SLOT" || { log "baseline slot differs from the image"; exit 1; }
rm -f "$BASE_SLOT"

# --- chunker ---------------------------------------------------------------
log "chunker benchmarks"
go test -run '^$' -bench . -benchtime 2s ./internal/chunker/ >"$R/chunker.txt"
BENCH_IMAGE=$IMAGE go test -run '^$' -bench RealImage -benchtime 3x ./bench/ >"$R/chunker-real.txt"
log "bundle reader benchmark (in process, no slot write)"
BENCH_BUNDLE=$BUNDLE go test -run '^$' -bench ReadBundle -benchtime 3x ./bench/ >"$R/reader.txt"
mbps() { awk -v n="$1" '$1 ~ "^"n"(-[0-9]+)?$" {for (i = 1; i <= NF; i++) if ($(i+1) == "MB/s") print $i}' "$2" | head -1; }

# --- report ------------------------------------------------------------------
gib=$IMAGE_SIZE
med() { col "$1" "$R"/"$2".* | median; }
base_w=$(med 1 base) inst_w=$(med 1 install) plain_w=$(med 1 plain)
plain_tp=$(echo "$gib / $plain_w / 1000000" | bc -l)
base_tp=$(echo "$gib / $base_w / 1000000" | bc -l)
inst_tp=$(echo "$gib / $inst_w / 1000000" | bc -l)
rss_max=$(col 4 "$R"/install.* | sort -n | tail -1)
base_rss=$(col 4 "$R"/base.* | sort -n | tail -1)
cr_w=$(med 1 create) cr_cpu=$(paste -d+ <(col 2 "$R"/create.*) <(col 3 "$R"/create.*) | bc | median)
ca_w=$(med 1 casync) ca_cpu=$(paste -d+ <(col 2 "$R"/casync.*) <(col 3 "$R"/casync.*) | bc | median)
ch=$(mbps BenchmarkChunker "$R/chunker.txt")
chb=$(mbps BenchmarkBoundaries "$R/chunker.txt")
chr=$(mbps BenchmarkRealImage "$R/chunker-real.txt")
chrs=$(mbps BenchmarkRealImageStream "$R/chunker-real.txt")
rdr=$(mbps BenchmarkReadBundle "$R/reader.txt")
bsize=$(stat -c %s "$BUNDLE") zsize=$(stat -c %s "$B/image.zst") csize=$(du -sb "$STORE" | cut -f1)
verdict() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo "met"; else echo "**not met**"; fi; }
r2() { printf '%.2f' "$(echo "$1" | bc -l)"; }
r3() { printf '%.3f' "$(echo "$1" | bc -l)"; }

cat <<EOF
## Results ($(date -u +%Y-%m-%dT%H:%MZ), N=$N, medians)

Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM,
$(uname -sr), $(go version | cut -d' ' -f3-), zstd $(zstd -V | grep -o 'v[0-9.]*'), load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg).

Image: 1 GiB (first $IMAGE_SIZE bytes of \`tar --sort=name -C / -cf - ${IMAGE_SRC#/}\`).

| what | tandem | baseline | ratio | target | verdict |
|---|---:|---:|---:|---|---|
| full install, wall incl. fsync | $(r2 "$inst_w") s = $(r2 "$inst_tp") MB/s | $(r2 "$base_w") s = $(r2 "$base_tp") MB/s (\`zstd -dc \| tee >(sha256sum) > slot; sync\`) | $(r2 "$inst_tp / $base_tp") | ≥ 0.90 | $(verdict "$inst_tp / $base_tp >= 0.9") |
| same, against \`zstd -dc > slot; sync\` (no hash; not a target) | $(r2 "$inst_tp") MB/s | $(r2 "$plain_w") s = $(r2 "$plain_tp") MB/s | $(r2 "$inst_tp / $plain_tp") | | — |
| peak RSS of the install (max of $N) | $((rss_max / 1024)) MiB | $((base_rss / 1024)) MiB (largest process of the pipeline) | | ≤ 64 MiB | $(verdict "$rss_max <= 65536") |
| chunker, Go benchmark \`BenchmarkChunker\` (64 MiB pseudo-random, 1 core) | $(r2 "$ch") MB/s | | | ≥ 1000 MB/s | $(verdict "$ch >= 1000") |
| chunker, \`BenchmarkBoundaries\` (same data, in memory) | $(r2 "$chb") MB/s | | | ≥ 1000 MB/s | $(verdict "$chb >= 1000") |
| chunker on the real image, in memory (\`bench/\` BenchmarkRealImage) | $(r2 "$chr") MB/s | | | ≥ 1000 MB/s | $(verdict "$chr >= 1000") |
| chunker on the real image, streaming (\`bench/\` BenchmarkRealImageStream) | $(r2 "$chrs") MB/s | | | | |
| bundle reader alone, in process (\`bench/\` BenchmarkReadBundle: read, verify, decompress, no write) | $(r2 "$rdr") MB/s | | | | |
| bundle creation (signed), wall | $(r2 "$cr_w") s, $(r2 "$cr_cpu") s CPU | $(r2 "$ca_w") s, $(r2 "$ca_cpu") s CPU (\`casync make\`, zstd, sha256) | $(r2 "$cr_w / $ca_w") (wall) | side by side | — |
| bundle size vs \`zstd -3\` of the image | $bsize B | $zsize B | $(r3 "$bsize / $zsize") | ≤ 1.15 | $(verdict "$bsize / $zsize <= 1.15") |
| bundle size vs casync store (\`du -sb\`) | $bsize B | $csize B | $(r2 "$bsize / $csize") | | — |

Per round (wall s / peak RSS MiB):

| round | baseline | zstd -dc > slot | tandem install | bundle create | casync make |
|---|---:|---:|---:|---:|---:|
EOF
for i in $(seq "$N"); do
	printf '| %d | %s / %d | %s / %d | %s / %d | %s / %d | %s / %d |\n' "$i" \
		"$(col 1 "$R/base.$i")" $(($(col 4 "$R/base.$i") / 1024)) \
		"$(col 1 "$R/plain.$i")" $(($(col 4 "$R/plain.$i") / 1024)) \
		"$(col 1 "$R/install.$i")" $(($(col 4 "$R/install.$i") / 1024)) \
		"$(col 1 "$R/create.$i")" $(($(col 4 "$R/create.$i") / 1024)) \
		"$(col 1 "$R/casync.$i")" $(($(col 4 "$R/casync.$i") / 1024))
done
