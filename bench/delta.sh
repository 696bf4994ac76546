#!/usr/bin/env bash
# tandem delta benchmark: bytes on the wire, requests and wall time of an
# update of a real ext4 image, on three pairs: v1 → v2 (3 % of the files
# changed), v1 → v2s (0.3 %), and k1 → k2 (1 GiB images: a kernel ABI
# upgrade and 28 Debian packages at newer versions), everything served by one
# nginx on loopback, for
#   - tandem update install URL             (delta: range requests, local chunk
#     reuse), with the default --delta-gap, 4096 and -1, and from a bundle made
#     with --compression best (the --delta-gap variants only on v2 and v2s)
#   - casync extract --seed=SOURCE from a casync store of the new image, over HTTP
#   - tandem update install URL --no-delta  (the whole bundle, one stream)
#   - tandem update install URL with a patch published next to the bundle
#     (tandem bundle delta), side by side with xdelta3 -9 -e -s and
#     zstd -19 --long=27 --patch-from (each patch downloaded from nginx and
#     applied to the source image); patch creation time and memory on the
#     build host
# The device holds the source (v1 or k1) as a factory image tandem never
# wrote (it scans it on first need). Bytes and requests come from nginx's access log. See
# docs/benchmarks-delta.md.
#
#   bash bench/delta.sh            # from the repository root (or anywhere)
#
# Environment:
#   BENCH_DIR  work directory (default /var/tmp/tandem-bench-delta); needs ~12 GiB.
#              The trees, images and casync store are cached there.
#   N          rounds of each method (default 3; wall time is the median)
#   TREE_MB    size of the directory tree put in the images (default 420)
#   IMAGE_MB   size of the ext4 images v1, v2, v2s (default 576)
#   K_IMAGE_MB size of the ext4 images k1, k2 (default 1024)
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
command -v xdelta3 >/dev/null || need+=(xdelta3)
[ -x /usr/bin/time ] || need+=(time)
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

# --- the trees: v1 is a copy of parts of this machine's /usr. Two updates:
# v2 changes 3 % of the files, removes 0.3 % and adds 0.1 % (the benchmark
# the goals are about); v2s changes 0.3 % of them (a small fix). Everything
# is deterministic for a given machine: files are taken in sorted order,
# changes are chosen and made from a hash of each path, and every time stamp
# is $EPOCH.
TREE_KEY="tree-v4 $TREE_MB $EPOCH"
if [ "$(cat "$B/tree.key" 2>/dev/null)" != "$TREE_KEY" ]; then
	log "building trees v1, v2 and v2s (~$TREE_MB MiB each)"
	rm -rf "$B"/tree-* "$B/tree.key" "$B"/*.ext4 "$B/images.key"
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

def make_v2(name, change_below, remove_below, add_below):
    v2 = os.path.join(out, "tree-" + name)
    shutil.copytree(v1, v2, symlinks=True)
    files, changed, changed_bytes, removed, added = 0, 0, 0, 0, 0
    paths = []
    for dirpath, dirnames, filenames in os.walk(v2):
        dirnames.sort()
        paths += [os.path.join(dirpath, n) for n in sorted(filenames)]
    for p in paths:
        if os.path.islink(p):
            continue
        files += 1
        rel = os.path.relpath(p, v2)
        r = h(rel, "pick") % 1000
        if r < change_below:
            with open(p, "rb") as f:
                data = f.read()
            with open(p, "r+b") as f:  # same inode, same directory entry
                f.write(change(data, rel))
                f.truncate()
            changed += 1
            changed_bytes += len(data)
        elif r < remove_below:
            os.unlink(p)
            removed += 1
        elif r < add_below:
            # a new file next to this one, with new content of the same kind
            with open(p, "rb") as f:
                data = f.read()
            with open(p + ".new", "wb") as f:
                f.write(change(data[::-1], rel))
            added += 1
    return "%s: %d of %d regular files (%d of %d bytes) changed, %d removed, %d added" % (
        name, changed, files, changed_bytes, total, removed, added)

# Scenarios (per mille of the regular files, chosen by a hash of the path):
# v2: 3 % changed, 0.3 % removed, 0.1 % added; v2s: 0.3 % changed (a small fix).
stats = [make_v2("v2", 30, 33, 34), make_v2("v2s", 3, 3, 3)]
for t in (v1, os.path.join(out, "tree-v2"), os.path.join(out, "tree-v2s")):
    for dirpath, dirnames, filenames in os.walk(t):
        for name in filenames + dirnames + [""]:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
with open(os.path.join(out, "tree.stats"), "w") as f:
    f.write("".join(x + "\n" for x in stats))
PY
	echo "$TREE_KEY" >"$B/tree.key"
fi
cat "$B/tree.stats" >&2

# mkimage TREE OUT: a reproducible ext4 image of TREE. Fixed UUID and hash
# seed, fake time for the file system's own stamps, no host xattrs; then
# debugfs sets every inode's atime and ctime (mke2fs copies them from the
# source files, whose ctime is when they were made) to $EPOCH, and resets the
# superblock's count of kilobytes written (which varies with how the source
# files sit in the page cache).
mkimage() {
	local tree=$1 out=$2
	rm -f "$out.tmp"
	truncate -s "${IMAGE_MB}M" "$out.tmp"
	E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -b 4096 -I 256 -L rootfs -U "$FS_UUID" \
		-E "root_owner=0:0,hash_seed=$FS_UUID,no_copy_xattrs,nodiscard" -d "$tree" "$out.tmp"
	(cd "$tree" && find . -mindepth 1 -printf '%P\n') |
		awk -v t="@$EPOCH" '{printf "sif \"/%s\" atime %s\nsif \"/%s\" ctime %s\n", $0, t, $0, t}
			END {for (i = 0; i < 2; i++) { d = i ? "/lost+found" : "/"; printf "sif \"%s\" atime %s\nsif \"%s\" ctime %s\n", d, t, d, t }
				print "ssv kbytes_written 0"}' >"$out.debugfs"
	E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$out.debugfs" "$out.tmp" >/dev/null 2>"$out.debugfs.err" || {
		cat "$out.debugfs.err" >&2
		exit 1
	}
	if grep -v '^debugfs ' "$out.debugfs.err" | grep -q .; then
		grep -v '^debugfs ' "$out.debugfs.err" | head >&2
		log "debugfs failed on $out"
		exit 1
	fi
	E2FSPROGS_FAKE_TIME=$EPOCH e2fsck -fn "$out.tmp" >/dev/null 2>&1 || { log "e2fsck finds $out broken"; exit 1; }
	mv "$out.tmp" "$out"
}
IMAGES_KEY="images-v4 $TREE_KEY $IMAGE_MB $FS_UUID $(mke2fs -V 2>&1 | sed -n 1p)"
if [ "$(cat "$B/images.key" 2>/dev/null)" != "$IMAGES_KEY" ] || [ ! -f "$B/v1.ext4" ] ||
	[ ! -f "$B/v2.ext4" ] || [ ! -f "$B/v2s.ext4" ]; then
	rm -f "$B/images.key"
	for v in v1 v2 v2s; do
		log "making $v.ext4 ($IMAGE_MB MiB)"
		mkimage "$B/tree-$v" "$B/$v.ext4"
	done
	echo "$IMAGES_KEY" >"$B/images.key"
	rm -rf "$B/www"
fi
IMAGE_SIZE=$(stat -c %s "$B/v1.ext4")

# --- the second pair, k1 → k2: a kernel and package upgrade (Debian 12 point
# releases apart). Both trees hold the binaries and libraries of v1's tree
# (usr/bin, usr/sbin, usr/lib) and, unpacked over them as dpkg would (merged
# /usr: /bin, /sbin, /lib and /lib64 are symbolic links into /usr), the real
# Debian packages below: k1 at the older version, k2 at the newer. The kernel
# changes ABI (6.1.0-50 → 6.1.0-57: a new /lib/modules directory, every module
# rebuilt) and 28 library and tool packages change version. The packages are
# fetched once with `apt-get download` from the Debian mirror this machine is
# configured with (both versions are in bookworm, bookworm-updates or
# bookworm-security) and cached in $B/debs; maintainer scripts do not run
# (no depmod, no ldconfig cache). K_IMAGE_MB: the images' size (1 GiB, which
# also measures the device's memory on a 1 GiB image).
K_IMAGE_MB=${K_IMAGE_MB:-1024}
K_PKGS="
linux-image-6.1.0-50-amd64=6.1.176-1 linux-image-6.1.0-57-amd64=6.1.192-3
libc6=2.36-9+deb12u7 libc6=2.36-9+deb12u14
libc-bin=2.36-9+deb12u7 libc-bin=2.36-9+deb12u14
libssl3=3.0.17-1~deb12u2 libssl3=3.0.22-1~deb12u2
openssl=3.0.17-1~deb12u2 openssl=3.0.22-1~deb12u2
systemd=252.38-1~deb12u1 systemd=252.39-1~deb12u2
libsystemd0=252.38-1~deb12u1 libsystemd0=252.39-1~deb12u2
libudev1=252.38-1~deb12u1 libudev1=252.39-1~deb12u2
udev=252.38-1~deb12u1 udev=252.39-1~deb12u2
python3.11=3.11.2-6+deb12u8 python3.11=3.11.2-6+deb12u9
python3.11-minimal=3.11.2-6+deb12u8 python3.11-minimal=3.11.2-6+deb12u9
libpython3.11-stdlib=3.11.2-6+deb12u8 libpython3.11-stdlib=3.11.2-6+deb12u9
libpython3.11-minimal=3.11.2-6+deb12u8 libpython3.11-minimal=3.11.2-6+deb12u9
libcurl4=7.88.1-10+deb12u5 libcurl4=7.88.1-10+deb12u15
curl=7.88.1-10+deb12u5 curl=7.88.1-10+deb12u15
openssh-client=1:9.2p1-2+deb12u7 openssh-client=1:9.2p1-2+deb12u10
openssh-server=1:9.2p1-2+deb12u7 openssh-server=1:9.2p1-2+deb12u10
libxml2=2.9.14+dfsg-1.3~deb12u4 libxml2=2.9.14+dfsg-1.3~deb12u6
libexpat1=2.5.0-1+deb12u2 libexpat1=2.5.0-1+deb12u5
perl-base=5.36.0-7+deb12u3 perl-base=5.36.0-7+deb12u4
libperl5.36=5.36.0-7+deb12u3 libperl5.36=5.36.0-7+deb12u4
perl-modules-5.36=5.36.0-7+deb12u3 perl-modules-5.36=5.36.0-7+deb12u4
git=1:2.39.5-0+deb12u2 git=1:2.39.5-0+deb12u3
tzdata=2025b-0+deb12u1 tzdata=2026f-0+deb12u1
libglib2.0-0=2.74.6-2+deb12u2 libglib2.0-0=2.74.6-2+deb12u9
util-linux=2.38.1-5+deb12u1 util-linux=2.38.1-5+deb12u3
libblkid1=2.38.1-5+deb12u1 libblkid1=2.38.1-5+deb12u3
libmount1=2.38.1-5+deb12u1 libmount1=2.38.1-5+deb12u3
sudo=1.9.13p3-1+deb12u2 sudo=1.9.13p3-1+deb12u4
"
K_KEY="ktree-v1 $TREE_KEY $(echo "$K_PKGS" | sha256sum | cut -c1-16)"
if [ "$(cat "$B/ktree.key" 2>/dev/null)" != "$K_KEY" ] || [ ! -d "$B/tree-k1" ] || [ ! -d "$B/tree-k2" ]; then
	rm -rf "$B/ktree.key" "$B"/tree-k1 "$B"/tree-k2 "$B"/k1.ext4 "$B"/k2.ext4 "$B/kimages.key"
	for k in 1 2; do
		d=$B/debs/k$k
		want=$(echo "$K_PKGS" | awk -v c=$k 'NF == 2 {print $c}')
		if [ "$(ls "$d" 2>/dev/null | grep -c '\.deb$')" != "$(echo "$want" | wc -l)" ]; then
			log "downloading the k$k packages (apt-get download)"
			rm -rf "$d" && mkdir -p "$d"
			# shellcheck disable=SC2086 # one word a package
			(cd "$d" && apt-get download $want >&2) ||
				{ log "apt-get download failed: is one of these versions gone from the mirror? $want"; exit 1; }
		fi
		log "building tree k$k (v1's usr/bin, usr/sbin, usr/lib and $(echo "$want" | wc -l) packages)"
		t=$B/tree-k$k
		mkdir -p "$t/usr"
		cp -a "$B/tree-v1/usr/bin" "$B/tree-v1/usr/sbin" "$B/tree-v1/usr/lib" "$t/usr/"
		for l in bin sbin lib lib64; do
			mkdir -p "$t/usr/$l"
			ln -s "usr/$l" "$t/$l"
		done
		for deb in "$d"/*.deb; do
			dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$t"
		done
		# debugfs (in mkimage) names files by path, in double quotes (a backslash,
		# as in systemd unit names, passes): refuse names it cannot take
		bad=$(cd "$t" && find . -name '*[^A-Za-z0-9._+@,=:/\\-]*' | head -3)
		[ -z "$bad" ] || { log "tree-k$k: file names mkimage cannot handle: $bad"; exit 1; }
		python3 - "$t" "$EPOCH" <<'PY'
import os, sys
t, e = sys.argv[1], int(sys.argv[2])
for dirpath, dirnames, filenames in os.walk(t):
    for n in filenames + dirnames + [""]:
        os.utime(os.path.join(dirpath, n), (e, e), follow_symlinks=False)
PY
	done
	echo "k1 → k2: $(cd "$B/tree-k1" && find . -type f | wc -l) and $(cd "$B/tree-k2" && find . -type f | wc -l) regular files," \
		"$(du -sm "$B/tree-k1" | cut -f1) and $(du -sm "$B/tree-k2" | cut -f1) MiB" >"$B/ktree.stats"
	echo "$K_KEY" >"$B/ktree.key"
fi
cat "$B/ktree.stats" >&2
KIMAGES_KEY="kimages-v1 $K_KEY $K_IMAGE_MB $FS_UUID $(mke2fs -V 2>&1 | sed -n 1p)"
if [ "$(cat "$B/kimages.key" 2>/dev/null)" != "$KIMAGES_KEY" ] || [ ! -f "$B/k1.ext4" ] || [ ! -f "$B/k2.ext4" ]; then
	rm -f "$B/kimages.key"
	for v in k1 k2; do
		log "making $v.ext4 ($K_IMAGE_MB MiB)"
		IMAGE_MB=$K_IMAGE_MB mkimage "$B/tree-$v" "$B/$v.ext4"
	done
	echo "$KIMAGES_KEY" >"$B/kimages.key"
	rm -rf "$B/www/k2".* "$B/www/store-k2"
fi
K_IMAGE_SIZE=$(stat -c %s "$B/k1.ext4")
# The pairs: NEW:SOURCE. key_of NEW: the cache key of NEW's images.
PAIRS="v2:v1 v2s:v1 k2:k1"
src_of() { case $1 in k*) echo k1 ;; *) echo v1 ;; esac; }
size_of() { case $1 in k*) echo "$K_IMAGE_SIZE" ;; *) echo "$IMAGE_SIZE" ;; esac; }
key_of() { case $1 in k*) echo "$KIMAGES_KEY" ;; *) echo "$IMAGES_KEY" ;; esac; }

# --- what is served: for each update, the tandem bundle and a casync store
# and index (casync's default compression and digest, tandem's chunk sizes).
W=$B/www
mkdir -p "$W"
if [ ! -f "$B/key.key" ] || [ ! -f "$B/key.pub" ]; then
	rm -f "$B/key.key" "$B/key.pub"
	"$TANDEM" key generate "$B/key" >/dev/null
fi
log "making the bundles (v1's and k1's only for their chunk lists)"
for b in v1 v2 v2s v2.best v2s.best k1 k2; do
	v=${b%.best} out=$W/$b.tandem args=(--key "$B/key.key") version=2.0.0
	[ $v != v2s ] || version=2.0.1
	[ $b = "$v" ] || args+=(--compression best)
	[ $v != v1 ] && [ $v != k1 ] || out=$B/$v.tandem args=(--compression stored) version=1.0.0
	rm -f "$out"
	SOURCE_DATE_EPOCH=$EPOCH "$TANDEM" bundle create "$out" --compatible tandem-sim \
		--version $version --slot system="$B/$v.ext4" "${args[@]}" >/dev/null
	"$TANDEM" bundle inspect --json --chunks "$out" >"$B/$b.chunks.json"
done
rm -f "$B/k1.tandem" # 1 GiB; only its chunk list is needed
# Patches from the source (the device's factory image, version 1.0.0):
# tandem's (next to the bundle, where devices look for it), xdelta3's and
# zstd's, each timed with its peak memory (/usr/bin/time: "elapsed-s
# max-rss-KiB"). The peers' are cached with the images (they take minutes);
# tandem's is made every run.
for pair in $PAIRS; do
	v=${pair%:*} s=${pair#*:}
	rm -rf "$W/$v.tandem.patches"
	/usr/bin/time -f '%e %M' -o "$B/create-$v.tandem" "$TANDEM" bundle delta "$W/$v.tandem" \
		--from-image system="$B/$s.ext4" --from-version 1.0.0 --key "$B/key.key" >/dev/null
	if [ "$(cat "$B/peers-$v.key" 2>/dev/null)" != "$(key_of $v)" ] || [ ! -f "$W/$v.xd3" ] || [ ! -f "$W/$v.zst" ]; then
		log "making the xdelta3 and zstd patches $s → $v"
		rm -f "$W/$v.xd3" "$W/$v.zst" "$B/peers-$v.key"
		/usr/bin/time -f '%e %M' -o "$B/create-$v.xdelta3" xdelta3 -9 -e -f -s "$B/$s.ext4" "$B/$v.ext4" "$W/$v.xd3"
		/usr/bin/time -f '%e %M' -o "$B/create-$v.zstd" zstd -q -19 --long=27 -f --patch-from="$B/$s.ext4" "$B/$v.ext4" -o "$W/$v.zst"
		key_of $v >"$B/peers-$v.key"
	fi
done
for v in v2 v2s k2; do
	if [ "$(cat "$B/store-$v.key" 2>/dev/null)" != "$(key_of $v)" ] || [ ! -f "$W/$v.caibx" ]; then
		log "making the casync store of $v"
		rm -rf "$W/store-$v" "$W/$v.caibx" "$B/store-$v.key"
		casync make --store="$W/store-$v" --chunk-size=16384:65536:262144 "$W/$v.caibx" "$B/$v.ext4" >/dev/null
		key_of $v >"$B/store-$v.key"
	fi
done

# --- nginx on loopback, its files in $B/nginx --------------------------------
NG=$B/nginx
. "$REPO/bench/nginx.sh"
trap '[ -z "${NGINX_PID:-}" ] || { kill $NGINX_PID 2>/dev/null; wait $NGINX_PID 2>/dev/null; } || true' EXIT
start_nginx "$NG" "$W" v2.caibx "$NG/access.log" || exit 1

# --- runs --------------------------------------------------------------------
R=$B/results
rm -rf "$R"
mkdir -p "$R"
DEV=$B/dev
OUT=$B/casync-out.img
# wire LABEL: waits until nginx has logged every request of the run (it logs
# after a response is sent), then keeps the log as LABEL.log.
wire() {
	local prev=-1 cur
	for _ in $(seq 50); do
		cur=$(wc -l <"$NG/access.log")
		[ "$cur" = "$prev" ] && break
		prev=$cur
		sleep 0.1
	done
	cp "$NG/access.log" "$R/$1.log"
	if awk '$1 != 200 && $1 != 206 {bad = 1} END {exit !bad}' "$R/$1.log"; then
		log "$1: unexpected HTTP status in the access log"
		exit 1
	fi
}
# A simulated device keeps an undo copy of every file it writes (for its
# power-cut tests), which would dominate tandem's peak RSS here: without its
# marker the device runs on the plain file layer, as a real device does.
fresh_device() {
	rm -rf "$DEV"
	"$TANDEM" sim new "$DEV" --boot-flow grub --slot-size "$(size_of "$1")" --image "$B/$(src_of "$1").ext4" \
		--trust "$B/key.pub" >/dev/null
	rm "$DEV/.tandem-sim.json"
}
check_result() {
	cmp -s -n "$(size_of "$2")" "$1" "$B/$2.ext4" || { log "$3: the result differs from $2.ext4"; exit 1; }
}
# run LABEL CMD...: truncates the access log, runs CMD (stdout to LABEL.out),
# records its wall time in LABEL.time (until the result is on disk: tandem
# fsyncs what it writes, casync does not, so a sync is timed too), its peak
# RSS in KiB in LABEL.rss (of CMD and its children: for a pipeline, its
# largest process) and the access log in LABEL.log.
run() {
	local label=$1 t0 t1
	shift
	: >"$NG/access.log"
	sync
	t0=$EPOCHREALTIME
	/usr/bin/time -f '%M' -o "$R/$label.rss" "$@" >"$R/$label.out"
	sync
	t1=$EPOCHREALTIME
	echo "$t1 - $t0" | bc -l >"$R/$label.time"
	wire "$label"
}
# tandem_install LABEL BUNDLE [OPTION...]: installs $BASE/BUNDLE.tandem on a
# fresh device and compares the slot with the image.
tandem_install() {
	local label=$1 b=$2
	shift 2
	fresh_device "${b%.best}"
	run "$label" "$TANDEM" --root "$DEV" update install "$BASE/$b.tandem" --json "$@"
	check_result "$DEV/slots/system-b.img" "${b%.best}" "$label"
}
# warm page cache for everybody
cat "$B/v1.ext4" "$B/k1.ext4" "$W"/*.tandem "$W"/*.caibx >/dev/null
find "$W"/store-* -type f -exec cat {} + >/dev/null
for pair in $PAIRS; do
	v=${pair%:*} s=${pair#*:}
	# zstd's window must hold the source: --long=27 when making the patch is
	# raised to the source's size by --patch-from, and the decoder must allow it.
	zlong=$(python3 -c "import sys; print(max(27, (int(sys.argv[1]) - 1).bit_length()))" "$(size_of $v)")
	for i in $(seq "$N"); do
		if [ "$v" = k2 ]; then
			# the bigger pair: the methods the issue compares (no --delta-gap variants)
			log "$v round $i/$N: tandem patch, tandem delta, tandem --no-delta, casync, xdelta3, zstd"
			tandem_install "$v.patch.$i" $v
			tandem_install "$v.delta.$i" $v --no-patch
		else
			log "$v round $i/$N: tandem patch, tandem delta (default --delta-gap, 4096, -1, best), tandem --no-delta, casync, xdelta3, zstd"
			tandem_install "$v.patch.$i" $v
			tandem_install "$v.delta.$i" $v --no-patch
			tandem_install "$v.gap4k.$i" $v --delta-gap 4096 --no-patch
			tandem_install "$v.gap0.$i" $v --delta-gap -1 --no-patch
			tandem_install "$v.best.$i" $v.best --delta-gap 4096 --no-patch
		fi
		tandem_install "$v.full.$i" $v --no-delta
		rm -f "$OUT"
		run "$v.casync.$i" casync extract --seed="$B/$s.ext4" --store="$BASE/store-$v/" "$BASE/$v.caibx" "$OUT"
		check_result "$OUT" $v "$v.casync.$i"
		rm -f "$OUT"
		run "$v.xdelta3.$i" sh -c "curl -fsS '$BASE/$v.xd3' | xdelta3 -d -c -s '$B/$s.ext4' >'$OUT'"
		check_result "$OUT" $v "$v.xdelta3.$i"
		rm -f "$OUT"
		run "$v.zstd.$i" sh -c "curl -fsS '$BASE/$v.zst' | zstd -q -d --long=$zlong --patch-from='$B/$s.ext4' -o '$OUT'"
		check_result "$OUT" $v "$v.zstd.$i"
	done
done
rm -rf "$DEV" "$OUT"

# --- analysis ------------------------------------------------------------------
python3 - "$B" "$R" "$N" "$W" >"$R/summary.md" <<'PY'
import json, os, statistics, sys

B, R, N, W = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
med = statistics.median
def load(p):
    with open(p) as f:
        return json.load(f)
olds = {src: {c["digest"] for c in load(os.path.join(B, src + ".chunks.json"))["payloads"][0]["chunks"]}
        for src in ("v1", "k1")}
summary = {}

def caibx(path):
    """(end offset, chunk id) of every chunk of a casync blob index."""
    with open(path, "rb") as f:
        idx = f.read()
    pos, out = 48 + 16, []  # CaFormatIndex, then the table header
    while True:
        end = int.from_bytes(idx[pos:pos + 8], "little")
        if end == 0:
            return out  # the table's tail starts with a zero
        out.append((end, idx[pos + 8:pos + 40].hex()))
        pos += 40

def runs(v, m):
    out = []
    for i in range(1, N + 1):
        base = os.path.join(R, "%s.%s.%d" % (v, m, i))
        body = total = n = 0
        for line in open(base + ".log"):
            f = line.split()
            body += int(f[1]); total += int(f[2]) + int(f[3]); n += 1
        t = float(open(base + ".time").read())
        rss = int(open(base + ".rss").read().split()[-1])
        ev = None
        for line in open(base + ".out"):
            if line.startswith("{"):
                ev = json.loads(line)
        out.append({"body": body, "http": total, "requests": n, "wall": round(t, 3), "rss": rss, "final": ev})
    return out

for v, src, title in (("v2", "v1", "v1 → v2: 3 % of the files changed, 0.3 % removed, 0.1 % added"),
                      ("v2s", "v1", "v1 → v2s: 0.3 % of the files changed"),
                      ("k2", "k1", "k1 → k2: a kernel (6.1.0-50 → 6.1.0-57) and 28 Debian packages upgraded")):
    old = olds[src]
    b = load(os.path.join(B, v + ".chunks.json"))
    pl = b["payloads"][0]
    ch = pl["chunks"]
    new = [i for i, c in enumerate(ch) if c["digest"] not in old]
    changed = sum(ch[i]["storedSize"] for i in new)
    distinct = {ch[i]["digest"] for i in new}
    bsize = os.path.getsize(os.path.join(W, v + ".tandem"))
    meta = bsize - pl["storedSize"]  # header, signatures and chunk table
    idx = caibx(os.path.join(W, v + ".caibx"))
    same = len(idx) == len(ch) and all(e == c["offset"] + c["size"] for (e, _), c in zip(idx, ch))
    cacnk = lambda i: os.path.getsize(os.path.join(W, "store-" + v, idx[i][1][:4], idx[i][1] + ".cacnk"))
    ca_changed = sum(cacnk(i) for i in new) if same else None
    bp = os.path.join(B, v + ".best.chunks.json")
    chb = load(bp)["payloads"][0]["chunks"] if os.path.exists(bp) else []
    changed_best = sum(c["storedSize"] for c in chb if c["digest"] not in old)
    s = {"changedStoredBest": changed_best, "chunks": len(ch), "changedChunks": len(new), "changedDistinct": len(distinct),
         "changedSize": sum(ch[i]["size"] for i in new), "changedStored": changed,
         "bundleSize": bsize, "bundleMeta": meta, "table": 40 * len(ch),  # 40-byte entries (format version 2)
         "caibxSize": os.path.getsize(os.path.join(W, v + ".caibx")), "sameBoundaries": same,
         "casyncChanged": ca_changed}
    rows = [("tandem patch (`update install URL`, a patch published next to the bundle)", "patch"),
            ("`xdelta3 -9 -e -s`: curl the patch, `xdelta3 -d -s %s.ext4`" % src, "xdelta3"),
            ("`zstd -19 --long=27 --patch-from`: curl the patch, `zstd -d --patch-from=%s.ext4`" % src, "zstd"),
            ("tandem delta (`--no-patch`, default `--delta-gap`)", "delta"),
            ("tandem delta, `--no-patch --delta-gap 4096`", "gap4k"),
            ("tandem delta, `--no-patch --delta-gap -1` (adjacent ranges only)", "gap0"),
            ("tandem delta, `--no-patch --delta-gap 4096`, bundle made with `--compression best`", "best"),
            ("casync (`extract --seed=%s.ext4`, HTTP store)" % src, "casync"),
            ("tandem full (`--no-delta`: the whole bundle)", "full")]
    rows = [r for r in rows if os.path.exists(os.path.join(R, "%s.%s.1.log" % (v, r[1])))]
    for _, m in rows:
        s[m] = runs(v, m)
    summary[v] = s
    ca = med(r["body"] for r in s["casync"])
    print("### %s\n" % title)
    print("| method | bytes on the wire (body) | requests | HTTP bytes incl. headers, both ways "
          "| wall time (median of %d) | peak RSS | ÷ casync | ÷ changed chunks |" % N)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in rows:
        rs = s[m]
        body = med(r["body"] for r in rs)
        var = "" if len({r["body"] for r in rs}) == 1 else " (varies: %s)" % ", ".join(str(r["body"]) for r in rs)
        # each bundle against the compressed size of its own changed chunks
        c = changed_best if m == "best" else changed
        print("| %s | %d%s | %d | %d | %.2f s | %.1f MiB | %.3f | %.3f |" % (
            name, body, var, med(r["requests"] for r in rs), med(r["http"] for r in rs),
            med(r["wall"] for r in rs), max(r["rss"] for r in rs) / 1024, body / ca, body / c))
    fe = s["delta"][-1]["final"] or {}
    print()
    # The patches: size on disk, creation time and memory on the build host.
    xd = os.path.getsize(os.path.join(W, v + ".xd3"))
    print("| patch %s → %s | file bytes | ÷ xdelta3 | creation time | creation peak RSS |" % (src, v))
    print("|---|---:|---:|---:|---:|")
    pdir = os.path.join(W, v + ".tandem.patches")
    for tool, f in (("tandem bundle delta", os.path.join(pdir, "version-1.0.0.tpatch")),
                    ("xdelta3 -9 -e -s", os.path.join(W, v + ".xd3")), ("zstd -19 --long=27 --patch-from", os.path.join(W, v + ".zst"))):
        key = {"tandem bundle delta": "tandem", "xdelta3 -9 -e -s": "xdelta3"}.get(tool, "zstd")
        el, rss = open(os.path.join(B, "create-%s.%s" % (v, key))).read().split()[-2:]
        print("| %s | %d | %.3f | %.1f s | %.0f MiB |" % (tool, os.path.getsize(f), os.path.getsize(f) / xd, float(el), int(rss) / 1024))
    s["patchFile"] = os.path.getsize(os.path.join(pdir, "version-1.0.0.tpatch"))
    pe = s["patch"][-1]["final"] or {}
    print()
    print("- tandem patch's final event: method %s, bytesDownloaded %s, chunksPatched %s, requests %s; %s." % (
        pe.get("method"), pe.get("bytesDownloaded"), pe.get("chunksPatched"), pe.get("requests"), pe.get("reason")))
    print("- tandem patch: %d bytes on the wire = patch file %d (its compact chunk table included: the bundle's "
          "is not fetched) + the bundle's first 4 KiB (header and signatures) 4096 + other %d." % (
        s["patch"][-1]["body"], s["patchFile"], s["patch"][-1]["body"] - s["patchFile"] - 4096))
    print()
    # tandem's own counters must agree with nginx's log
    bad = ["%s.%s.%d" % (v, m, i + 1) for m in ("patch", "delta", "gap4k", "gap0", "best") if m in s for i, r in enumerate(s[m])
           if not r["final"] or r["final"].get("bytesDownloaded") != r["body"] or r["final"].get("requests") != r["requests"]]
    print("- tandem's bytesDownloaded and requests equal nginx's log in every delta run." if not bad else
          "- **tandem's counters differ from nginx's log** in %s." % ", ".join(bad))
    print("- changed chunks: %d of %d chunks of %s (%d distinct) are not among %s's; content %d bytes, "
          "compressed (sum of their storedSize in the bundle) **%d bytes**%s." % (
              len(new), len(ch), v, len(distinct), src, s["changedSize"], changed,
              " (%d with `--compression best`)" % changed_best if chb else ""))
    if same:
        print("- casync cuts the same %d chunks; its store holds the changed ones in %d bytes; "
              "%s.caibx is %d bytes." % (len(idx), ca_changed, v, s["caibxSize"]))
    print("- %s.tandem: %d bytes; %d of them before the chunk data (header and signatures %d, chunk table %d)." % (
        v, bsize, meta, meta - s["table"], s["table"]))
    for m in [m for m in ("delta", "gap4k", "gap0", "best") if m in s]:
        body = s[m][-1]["body"]
        c = changed_best if m == "best" else changed
        print("- %s: %d = changed chunks %d + header, signatures and table %d + other (probe beyond the "
              "header, gaps fetched to save requests) %d." % (m, body, c, meta, body - c - meta))
    print("- casync: %d = changed chunks %d + index %d + other %d." % (
        s["casync"][-1]["body"], ca_changed or 0, s["caibxSize"],
        s["casync"][-1]["body"] - (ca_changed or 0) - s["caibxSize"]))
    print("- tandem delta's final event: bytesDownloaded %s, bytesReused %s, chunksFetched %s, requests %s.\n" % (
        fe.get("bytesDownloaded"), fe.get("bytesReused"), fe.get("chunksFetched"), fe.get("requests")))
    # What --delta-gap trades, computed from the tables the way internal/fetch
    # plans requests (a range joins the request before it when the gap is at
    # most the threshold and the request stays within 8 MiB).
    ranges, off = [], 0
    for c in ch:
        if c["digest"] not in old:
            ranges.append((off, c["storedSize"]))
        off += c["storedSize"]
    print("| `--delta-gap` | chunk requests | gap bytes fetched and thrown away |")
    print("|---:|---:|---:|")
    for gap in (-1, 512, 1024, 2048, 4096, 8192, 16384, 65536):
        reqs = waste = 0
        start = end = None
        for o, n in ranges:
            if end is not None and o - end <= max(gap, 0) and o + n - start <= 8 << 20:
                waste += o - end
                end = o + n
            else:
                reqs, start, end = reqs + 1, o, o + n
        print("| %d | %d | %d |" % (gap, reqs, waste))
    print()
json.dump(summary, open(os.path.join(R, "summary.json"), "w"), indent=1)
PY
{
	echo "## Results ($(date -u +%Y-%m-%dT%H:%MZ), N=$N)"
	echo
	echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
		"$(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr), $(go version | cut -d' ' -f3-)," \
		"nginx $(nginx -v 2>&1 | sed 's|.*/||'), casync $(casync --version | awk '{print $2}')" \
		"($(dpkg-query -W -f '${Version}' casync 2>/dev/null || echo '?')), e2fsprogs $(mke2fs -V 2>&1 | awk 'NR == 1 {print $2}');" \
		"load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "Images: $IMAGE_SIZE-byte ext4 (\`mkfs.ext4 -d\`) of a $TREE_MB MiB tree taken from this machine's /usr."
	sed 's/^/- /' "$B/tree.stats"
	echo "- $(cat "$B/ktree.stats") (k1 and k2: $K_IMAGE_SIZE-byte ext4 images)"
	echo
	cat "$R/summary.md"
} >"$R/report.md"
cat "$R/report.md"
log "done in $(printf '%.0f' "$(echo "$EPOCHREALTIME - $T_START" | bc -l)") s; load average before: $LOAD0, after: $(cut -d' ' -f1-3 /proc/loadavg)"
