#!/bin/sh
# Buildroot post-image script (BR2_ROOTFS_POST_IMAGE_SCRIPT): signs a tandem
# update bundle of the root filesystem image, with host-tandem.
#
#   BR2_ROOTFS_POST_IMAGE_SCRIPT="$(BR2_EXTERNAL_TANDEM_PATH)/package/tandem/post-image.sh"
#   BR2_ROOTFS_POST_SCRIPT_ARGS="--compatible acme-gw --version 1.2.0 --key /secure/release.key"
#
# Buildroot calls it with BINARIES_DIR first, then BR2_ROOTFS_POST_SCRIPT_ARGS,
# and HOST_DIR in the environment. Options:
#   --compatible C  the string devices check (system.toml compatible); required
#   --version V     the bundle's version (semantic or dotted numbers); required
#   --key FILE      the signing key (PEM); required
#   --rootfs NAME   the image in BINARIES_DIR to ship as slot "system" (default rootfs.ext4)
#   --out NAME      the bundle's name in BINARIES_DIR (default update.tandem)
# A disk image (partition table, both system groups, boot files) is not made
# here: tandem has no image command yet (docs/integrations/buildroot.md).
set -eu

binaries=${1:?usage: post-image.sh BINARIES_DIR --compatible C --version V --key FILE}
shift
compatible="" version="" key="" rootfs=rootfs.ext4 out=update.tandem
while [ $# -gt 0 ]; do
	case "$1" in
	--compatible) compatible=${2:?}; shift 2 ;;
	--version) version=${2:?}; shift 2 ;;
	--key) key=${2:?}; shift 2 ;;
	--rootfs) rootfs=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	*) echo "tandem post-image: unknown argument $1" >&2; exit 2 ;;
	esac
done
for v in compatible version key; do
	eval "val=\$$v"
	if [ -z "$val" ]; then
		echo "tandem post-image: --$v is required (BR2_ROOTFS_POST_SCRIPT_ARGS)" >&2
		exit 2
	fi
done
tandem=${HOST_DIR:?HOST_DIR is not set (run from Buildroot)}/bin/tandem
if [ ! -x "$tandem" ]; then
	echo "tandem post-image: $tandem is missing: enable BR2_PACKAGE_HOST_TANDEM (host-tandem)" >&2
	exit 1
fi
"$tandem" bundle create "$binaries/$out" --compatible "$compatible" --version "$version" \
	--slot "system=$binaries/$rootfs" --key "$key"
echo "tandem post-image: $binaries/$out"
