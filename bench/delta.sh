#!/usr/bin/env bash
# tandem delta benchmark: bytes on the wire, requests and wall time of a v1→v2
# update of a real ext4 image, served by nginx on loopback, for
#   (a) tandem update install URL            (delta: range requests, local chunk reuse)
#   (b) tandem update install URL --no-delta (the whole bundle, one stream)
#   (c) casync extract --seed=v1 from a casync store of v2 over HTTP
# The device holds v1 as a factory image tandem never wrote (it scans it on
# first need). See docs/benchmarks-delta.md.
#
#   bash bench/delta.sh            # from the repository root (or anywhere)
#
# Environment:
#   BENCH_DIR  work directory (default /var/tmp/tandem-bench-delta); needs ~6 GiB.
#              The trees, images and casync store are cached there.
#   N          rounds of each method (default 3; wall time is the median)
#   TREE_MB    size of the directory tree put in the images (default 420)
#   IMAGE_MB   size of the ext4 images (default 576)
#
# Idempotent: every run rebuilds bin/tandem, the bundles and the devices;
# the trees, images and casync store are rebuilt when their inputs change.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/tandem-bench-delta}
N=${N:-3}
TREE_MB=${TREE_MB:-420}
IMAGE_MB=${IMAGE_MB:-576}
EPOCH=1700000000
FS_UUID=5d2a0c8e-7b1f-4e3a-9c61-0a4b7e2f9d13
B=$BENCH_DIR

log() { printf '%s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v casync >/dev/null || need+=(casync)
[ -x /usr/lib/casync/protocols/casync-http ] || need+=(casync)
command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v zstd >/dev/null || need+=(zstd)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2 ||
		{ apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >&2; }
fi

mkdir -p "$B"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$EPOCHREALTIME
cd "$REPO"
log "building bin/tandem"
CGO_ENABLED=0 go build -o bin/tandem ./cmd/tandem
TANDEM=$REPO/bin/tandem

# --- the trees: v1 is a copy of parts of this machine's /usr; v2 changes ~3 %
# of its files, removes 0.3 % and adds a few. Everything is deterministic for
# a given machine: files are taken in sorted order, changes are chosen and
# made from a hash of each path, and every time stamp is $EPOCH.
TREE_KEY="tree-v3 $TREE_MB $EPOCH"
if [ "$(cat "$B/tree.key" 2>/dev/null)" != "$TREE_KEY" ]; then
	log "building trees v1 and v2 (~$TREE_MB MiB each)"
	rm -rf "$B/tree-v1" "$B/tree-v2" "$B/tree.key" "$B/v1.ext4" "$B/v2.ext4" "$B/images.key"
	python3 - "$B" "$TREE_MB" "$EPOCH" <<'PY'
import hashlib, os, shutil, stat, sys

out, tree_mb, epoch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# (root, share of the tree in %): whole directories of a typical root file
# system, each filled in sorted order up to its share.
roots = [
    ("usr/bin", 20), ("usr/sbin", 3), ("usr/lib/x86_64-linux-gnu", 34),
    ("usr/lib/python3.11", 11), ("usr/lib/git-core", 4), ("usr/share/perl", 4),
    ("usr/share/zoneinfo", 1), ("usr/share/i18n", 3), ("usr/share/mime", 1),
    ("usr/share/vim", 7), ("usr/share/man", 6), ("usr/share/doc", 6),
]
safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-@,=/")

def h(rel, salt):
    return int.from_bytes(hashlib.sha256((salt + rel).encode()).digest()[:8], "big")

v1 = os.path.join(out, "tree-v1")
total = 0
for root, share in roots:
    budget = tree_mb * share // 100 << 20
    used = 0
    src = "/" + root
    if not os.path.isdir(src):
        continue
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            rel = p[1:]
            if not set(rel) <= safe or name.endswith(".a"):
                continue  # debugfs below names files by path
            st = os.lstat(p)
            dst = os.path.join(v1, rel)
            if stat.S_ISLNK(st.st_mode):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink(os.readlink(p), dst)
            elif stat.S_ISREG(st.st_mode) and st.st_size <= 16 << 20 and os.access(p, os.R_OK):
                if used + st.st_size > budget:
                    continue
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(p, dst)
                os.chmod(dst, stat.S_IMODE(st.st_mode))
                used += st.st_size
    total += used

def change(data, rel):
    # A new build of the file: one byte in every 512 changes (so every chunk
    # of it changes, as with a recompiled binary or an edited text) and a
    # tail of 0 to 3 KiB is added; the data stays as compressible as before.
    b = bytearray(data)
    k = h(rel, "pos") % 512
    for i in range(k % max(1, min(512, len(b))), len(b), 512):
        b[i] ^= 0x20
    tail = ("\n# v2 %s\n" % rel).encode()
    n = h(rel, "tail") % 3072
    return bytes(b) + (tail * (n // len(tail) + 1))[:n]

v2 = os.path.join(out, "tree-v2")
shutil.copytree(v1, v2, symlinks=True)
changed = removed = added = 0
changed_bytes = 0
files = []
for dirpath, dirnames, filenames in os.walk(v2):
    dirnames.sort()
    for name in sorted(filenames):
        p = os.path.join(dirpath, name)
        if os.path.islink(p):
            continue
        files.append(p)
for p in files:
    rel = os.path.relpath(p, v2)
    r = h(rel, "pick") % 1000
    if r < 30:
        with open(p, "rb") as f:
            data = f.read()
        with open(p, "r+b") as f:  # same inode, same directory entry
            f.write(change(data, rel))
            f.truncate()
        changed += 1
        changed_bytes += len(data)
    elif r < 33:
        os.unlink(p)
        removed += 1
    elif r < 34:
        # a new file next to this one, with new content of the same kind
        with open(p, "rb") as f:
            data = f.read()
        with open(p + ".new", "wb") as f:
            f.write(change(data[::-1], rel))
        added += 1
for t in (v1, v2):
    for dirpath, dirnames, filenames in os.walk(t):
        for name in filenames + dirnames + [""]:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
with open(os.path.join(out, "tree.stats"), "w") as f:
    f.write("files=%d bytes=%d changed=%d changed_bytes=%d removed=%d added=%d\n"
            % (len(files), total, changed, changed_bytes, removed, added))
PY
	echo "$TREE_KEY" >"$B/tree.key"
fi
cat "$B/tree.stats" >&2

# mkimage TREE OUT: a reproducible ext4 image of TREE. Fixed UUID and hash
# seed, fake time for the file system's own stamps, no host xattrs; then
# debugfs sets every inode's atime and ctime (mke2fs copies them from the
# source files, whose ctime is when they were made) to $EPOCH.
mkimage() {
	local tree=$1 out=$2
	rm -f "$out.tmp"
	truncate -s "${IMAGE_MB}M" "$out.tmp"
	E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -b 4096 -I 256 -L rootfs -U "$FS_UUID" \
		-E "root_owner=0:0,hash_seed=$FS_UUID,no_copy_xattrs,nodiscard" -d "$tree" "$out.tmp"
	(cd "$tree" && find . -mindepth 1 -printf '%P\n') |
		awk -v t="@$EPOCH" '{printf "sif \"/%s\" atime %s\nsif \"/%s\" ctime %s\n", $0, t, $0, t}
			END {for (i = 0; i < 2; i++) { d = i ? "/lost+found" : "/"; printf "sif \"%s\" atime %s\nsif \"%s\" ctime %s\n", d, t, d, t }}' >"$out.debugfs"
	E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$out.debugfs" "$out.tmp" >/dev/null 2>"$out.debugfs.err" || {
		cat "$out.debugfs.err" >&2
		exit 1
	}
	if grep -v '^debugfs ' "$out.debugfs.err" | grep -q .; then
		grep -v '^debugfs ' "$out.debugfs.err" | head >&2
		log "debugfs failed on $out"
		exit 1
	fi
	E2FSPROGS_FAKE_TIME=$EPOCH e2fsck -fn "$out.tmp" >/dev/null || { log "e2fsck finds $out broken"; exit 1; }
	mv "$out.tmp" "$out"
}
IMAGES_KEY="images-v2 $TREE_KEY $IMAGE_MB $FS_UUID $(mke2fs -V 2>&1 | head -1)"
if [ "$(cat "$B/images.key" 2>/dev/null)" != "$IMAGES_KEY" ] || [ ! -f "$B/v1.ext4" ] || [ ! -f "$B/v2.ext4" ]; then
	log "making v1.ext4 and v2.ext4 ($IMAGE_MB MiB each)"
	rm -f "$B/images.key"
	mkimage "$B/tree-v1" "$B/v1.ext4"
	mkimage "$B/tree-v2" "$B/v2.ext4"
	echo "$IMAGES_KEY" >"$B/images.key"
	rm -rf "$B/www"
fi
IMAGE_SIZE=$(stat -c %s "$B/v2.ext4")

# --- what is served: the tandem bundle of v2 and a casync store + index of v2
W=$B/www
mkdir -p "$W"
if [ ! -f "$B/key.key" ] || [ ! -f "$B/key.pub" ]; then
	rm -f "$B/key.key" "$B/key.pub"
	"$TANDEM" key generate "$B/key" >/dev/null
fi
log "making the bundles (v2 served; v1 only for its chunk list)"
rm -f "$W/v2.tandem" "$B/v1.tandem"
SOURCE_DATE_EPOCH=$EPOCH "$TANDEM" bundle create "$W/v2.tandem" --compatible tandem-sim \
	--version 2.0.0 --slot system="$B/v2.ext4" --key "$B/key.key" >/dev/null
SOURCE_DATE_EPOCH=$EPOCH "$TANDEM" bundle create "$B/v1.tandem" --compatible tandem-sim \
	--version 1.0.0 --slot system="$B/v1.ext4" --compression stored >/dev/null
"$TANDEM" bundle inspect --json --chunks "$W/v2.tandem" >"$B/v2.chunks.json"
"$TANDEM" bundle inspect --json --chunks "$B/v1.tandem" >"$B/v1.chunks.json"
if [ "$(cat "$B/store.key" 2>/dev/null)" != "$IMAGES_KEY" ] || [ ! -f "$W/v2.caibx" ]; then
	log "making the casync store of v2 (casync's default compression and digest)"
	rm -rf "$W/store" "$W/v2.caibx" "$B/store.key"
	casync make --store="$W/store" --chunk-size=16384:65536:262144 "$W/v2.caibx" "$B/v2.ext4" >/dev/null
	echo "$IMAGES_KEY" >"$B/store.key"
fi

# --- nginx on loopback, its files in $B/nginx --------------------------------
NG=$B/nginx
rm -rf "$NG"
mkdir -p "$NG/tmp"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
userline=""
[ "$(id -u)" != 0 ] || userline="user $(id -un) $(id -gn);"
cat >"$NG/nginx.conf" <<EOF
$userline
worker_processes 1;
pid "$NG/nginx.pid";
error_log "$NG/error.log" info;
events { worker_connections 256; }
http {
	log_format bench '\$status \$body_bytes_sent "\$http_range" "\$request_uri"';
	access_log "$NG/access.log" bench;
	client_body_temp_path "$NG/tmp/client_body";
	proxy_temp_path "$NG/tmp/proxy";
	fastcgi_temp_path "$NG/tmp/fastcgi";
	uwsgi_temp_path "$NG/tmp/uwsgi";
	scgi_temp_path "$NG/tmp/scgi";
	default_type application/octet-stream;
	sendfile on;
	keepalive_requests 100000;
	server {
		listen 127.0.0.1:$PORT;
		root "$W";
	}
}
EOF
nginx -p "$NG/" -c "$NG/nginx.conf" -e "$NG/error.log" -g 'daemon off;' &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null; wait $NGINX_PID 2>/dev/null || true' EXIT
BASE=http://127.0.0.1:$PORT
for _ in $(seq 100); do
	curl -fs -o /dev/null -r 0-0 "$BASE/v2.caibx" && break
	sleep 0.1
done
curl -fs -o /dev/null -r 0-0 "$BASE/v2.caibx" || { cat "$NG/error.log" >&2; log "nginx does not answer"; exit 1; }

# --- runs --------------------------------------------------------------------
R=$B/results
rm -rf "$R"
mkdir -p "$R"
DEV=$B/dev
OUT=$B/casync-out.img
# wire LABEL: waits until nginx has logged every request of the run (it logs
# after a response is sent), then writes "bytes requests" of its access log.
wire() {
	local prev=-1 cur
	for _ in $(seq 50); do
		cur=$(wc -l <"$NG/access.log")
		[ "$cur" = "$prev" ] && break
		prev=$cur
		sleep 0.1
	done
	cp "$NG/access.log" "$R/$1.log"
	awk '{b += $2; n++} END {printf "%d %d\n", b, n}' "$R/$1.log" >"$R/$1.wire"
	if awk '$1 != 200 && $1 != 206 {bad = 1} END {exit !bad}' "$R/$1.log"; then
		log "$1: unexpected HTTP status in the access log"
		exit 1
	fi
}
fresh_device() {
	rm -rf "$DEV"
	"$TANDEM" sim new "$DEV" --boot-flow grub --slot-size "$IMAGE_SIZE" --image "$B/v1.ext4" \
		--trust "$B/key.pub" >/dev/null
}
check_slot() {
	cmp -s -n "$IMAGE_SIZE" "$1" "$B/v2.ext4" || { log "$2: the result differs from v2.ext4"; exit 1; }
}
# run LABEL CMD...: truncates the access log, runs CMD (stdout to LABEL.out),
# records its wall time in LABEL.time and the wire counts in LABEL.wire.
run() {
	local label=$1 t0 t1
	shift
	: >"$NG/access.log"
	sync
	t0=$EPOCHREALTIME
	"$@" >"$R/$label.out"
	t1=$EPOCHREALTIME
	echo "$t1 - $t0" | bc -l >"$R/$label.time"
	wire "$label"
}
cat "$B/v1.ext4" "$W/v2.tandem" "$W/v2.caibx" >/dev/null # warm page cache for everybody
find "$W/store" -type f -exec cat {} + >/dev/null
for i in $(seq "$N"); do
	log "round $i/$N: tandem delta"
	fresh_device
	run "delta.$i" "$TANDEM" --root "$DEV" update install "$BASE/v2.tandem" --json
	check_slot "$DEV/slots/system-b.img" "tandem delta"
	log "round $i/$N: tandem full (--no-delta)"
	fresh_device
	run "full.$i" "$TANDEM" --root "$DEV" update install "$BASE/v2.tandem" --json --no-delta
	check_slot "$DEV/slots/system-b.img" "tandem full"
	log "round $i/$N: casync extract --seed"
	rm -f "$OUT"
	run "casync.$i" casync extract --seed="$B/v1.ext4" --store="$BASE/store/" "$BASE/v2.caibx" "$OUT"
	check_slot "$OUT" "casync"
done
rm -rf "$DEV" "$OUT"

# --- analysis ------------------------------------------------------------------
python3 - "$B" "$R" "$N" "$W" >"$R/summary.txt" <<'PY'
import json, os, statistics, sys

B, R, N, W = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def load(p):
    with open(p) as f:
        return json.load(f)
v1 = load(os.path.join(B, "v1.chunks.json"))["payloads"][0]["chunks"]
v2b = load(os.path.join(B, "v2.chunks.json"))
v2 = v2b["payloads"][0]["chunks"]
old = {c["digest"] for c in v1}
new = [c for c in v2 if c["digest"] not in old]
changed = sum(c["storedSize"] for c in new)
seen, changed_unique = set(), 0
for c in new:
    if c["digest"] not in seen:
        seen.add(c["digest"])
        changed_unique += c["storedSize"]
bsize = os.path.getsize(os.path.join(W, "v2.tandem"))
stored = v2b["payloads"][0]["storedSize"]
meta = bsize - stored  # header, signatures and chunk table
table = 80 * len(v2)

# casync: the caibx lists the same boundaries (same chunker and sizes), so
# chunk i of the index is chunk i of the bundle; the store holds it as
# <id>.cacnk, compressed by casync.
with open(os.path.join(W, "v2.caibx"), "rb") as f:
    idx = f.read()
caibx_size = len(idx)
pos = 48 + 16
ids, ends = [], []
while True:
    end = int.from_bytes(idx[pos:pos + 8], "little")
    if end == 0:
        break  # the table's tail starts with a zero
    ids.append(idx[pos + 8:pos + 40].hex())
    ends.append(end)
    pos += 40
same_bounds = len(ids) == len(v2) and all(e == c["offset"] + c["size"] for e, c in zip(ends, v2))
def cacnk(i):
    return os.path.getsize(os.path.join(W, "store", ids[i][:4], ids[i] + ".cacnk"))
ca_changed = ca_changed_unique = None
if same_bounds:
    newi = [i for i, c in enumerate(v2) if c["digest"] not in old]
    ca_changed = sum(cacnk(i) for i in newi)
    ca_changed_unique = sum(cacnk(i) for i in {ids[i]: i for i in newi}.values())

def runs(m):
    out = []
    for i in range(1, N + 1):
        b, n = map(int, open(os.path.join(R, "%s.%d.wire" % (m, i))).read().split())
        t = float(open(os.path.join(R, "%s.%d.time" % (m, i))).read())
        ev = None
        if m != "casync":
            for line in open(os.path.join(R, "%s.%d.out" % (m, i))):
                line = line.strip()
                if line.startswith("{"):
                    ev = json.loads(line)
        out.append((b, n, t, ev))
    return out
res = {m: runs(m) for m in ("delta", "full", "casync")}
med = lambda xs: statistics.median(xs)
summary = {
    "chunks": len(v2), "changedChunks": len(new), "changedUniqueChunks": len(seen),
    "changedStored": changed, "changedStoredUnique": changed_unique,
    "changedSize": sum(c["size"] for c in new),
    "bundleSize": bsize, "bundleMeta": meta, "table": table,
    "caibxSize": caibx_size, "sameBoundaries": same_bounds,
    "casyncChanged": ca_changed, "casyncChangedUnique": ca_changed_unique,
    "storeSize": sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(W, "store")) for f in fs),
}
for m, rs in res.items():
    summary[m] = {"bytes": [r[0] for r in rs], "requests": [r[1] for r in rs],
                  "wall": [round(r[2], 3) for r in rs], "medianWall": round(med([r[2] for r in rs]), 3),
                  "final": rs[-1][3]}
json.dump(summary, open(os.path.join(R, "summary.json"), "w"), indent=1)

ca_b = med(summary["casync"]["bytes"])
def row(name, m):
    s = summary[m]
    b = med(s["bytes"]); n = med(s["requests"])
    same = "" if len(set(s["bytes"])) == 1 else " (varies: %s)" % ", ".join(map(str, s["bytes"]))
    return "| %s | %d%s | %d | %.2f s | %.3f | %.3f |" % (name, b, same, n, s["medianWall"], b / ca_b, b / changed)
print("| method | bytes on the wire | requests | wall time (median of %d) | ÷ casync | ÷ changed chunks |" % N)
print("|---|---:|---:|---:|---:|---:|")
print(row("tandem delta (`update install URL`)", "delta"))
print(row("casync (`extract --seed=v1`, HTTP store)", "casync"))
print(row("tandem full (`--no-delta`, whole bundle)", "full"))
print()
d = summary["delta"]
fe = d["final"] or {}
print("Changed chunks: %d of %d chunks of v2 (%d distinct) are not among v1's chunks; their content is %d bytes, "
      "compressed (bundle storedSize) %d bytes (%d for the distinct ones)." % (
      len(new), len(v2), len(seen), summary["changedSize"], changed, changed_unique))
if same_bounds:
    print("casync cuts the same %d chunks; its store holds the changed ones in %d bytes (%d distinct)." % (
          len(ids), ca_changed, ca_changed_unique))
print("v2 bundle: %d bytes, of which %d before the chunk data (header, signatures, chunk table of %d bytes); "
      "v2.caibx: %d bytes; casync store: %d bytes." % (bsize, meta, table, caibx_size, summary["storeSize"]))
print("tandem delta final event: bytesDownloaded %s, bytesReused %s, chunksFetched %s, requests %s." % (
      fe.get("bytesDownloaded"), fe.get("bytesReused"), fe.get("chunksFetched"), fe.get("requests")))
PY
cat "$R/summary.txt"
log "done in $(printf '%.0f' "$(echo "$EPOCHREALTIME - $T_START" | bc -l)") s; load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
