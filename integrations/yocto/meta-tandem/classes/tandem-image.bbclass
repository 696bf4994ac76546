# tandem-image: an A/B image for tandem's GRUB boot flow on EFI machines.
#
# Inherit it in an image recipe. It installs tandem, writes
# /etc/tandem/system.toml and the trusted keys into the root filesystem, and
# selects a wic layout: 1 EFI system partition (GRUB, tandem.cfg, grubenv
# blocks), 2 system-a (this root filesystem), 3 system-b (empty, same size),
# 4 data (/data). See docs/integrations/yocto.md.

# Bundles must carry this string to be installed (system.toml `compatible`).
TANDEM_COMPATIBLE ??= ""
# Public keys (PEM) that sign your bundles, installed to /etc/tandem/keys.
TANDEM_KEYS ??= ""
# Size of each system partition: the spare one gets the same.
TANDEM_SYSTEM_SIZE ??= "1024M"
# Size of the data partition, mounted at /data; tandem's data-dir is /data/tandem.
TANDEM_DATA_SIZE ??= "256M"
# Boots a new group gets to commit itself (1-9).
TANDEM_ATTEMPTS ??= "3"

IMAGE_INSTALL:append = " tandem kernel-image"
IMAGE_FSTYPES:append = " wic"
WKS_FILE ?= "tandem-grub-efi.wks.in"
EFI_PROVIDER ?= "grub-efi"
WKS_FILE_DEPENDS:append = " grub-efi tandem"
# tandem.cfg (deployed by the tandem recipe), next to grub.cfg on the ESP.
do_image_wic[depends] += "tandem:do_deploy"
IMAGE_EFI_BOOT_FILES:append = " tandem.cfg;EFI/BOOT/tandem.cfg"
WICVARS:append = " TANDEM_SYSTEM_SIZE TANDEM_DATA_SIZE"

ROOTFS_POSTPROCESS_COMMAND:append = " tandem_write_config"

tandem_write_config() {
	if [ -z "${TANDEM_COMPATIBLE}" ]; then
		bbfatal "tandem-image: set TANDEM_COMPATIBLE (the string your bundles carry)"
	fi
	conf=${IMAGE_ROOTFS}${sysconfdir}/tandem/system.toml
	install -d ${IMAGE_ROOTFS}${sysconfdir}/tandem/keys ${IMAGE_ROOTFS}/data
	cat > $conf <<TOML
# Written by meta-tandem's tandem-image.bbclass for ${IMAGE_BASENAME}.
compatible = "${TANDEM_COMPATIBLE}"
data-dir = "/data/tandem"

[slots.system-a]
type = "block"
partition = 2

[slots.system-b]
type = "block"
partition = 3

[groups.a]
slots = { system = "system-a" }

[groups.b]
slots = { system = "system-b" }

[boot-flow]
type = "grub"
boot-dir = "/boot"
attempts = ${TANDEM_ATTEMPTS}
TOML
	chmod 0644 $conf
	for key in ${TANDEM_KEYS}; do
		install -m 0644 $key ${IMAGE_ROOTFS}${sysconfdir}/tandem/keys/
	done
}
