SUMMARY = "tandem: robust A/B over-the-air updates for embedded Linux"
DESCRIPTION = "Writes an update to the spare boot group, boots it once on trial and keeps it \
only when the new system commits itself. One static binary: agent, command line and bundler."
HOMEPAGE = "https://github.com/tandem-ota/tandem"
SECTION = "admin"

# tandem's repository declares no licence yet (it has no LICENSE file).
# Replace CLOSED by its SPDX identifier and add its LIC_FILES_CHKSUM once it
# does; the modules' licences are in tandem-licenses.inc.
LICENSE = "CLOSED"

SRC_URI = "git://github.com/tandem-ota/tandem.git;protocol=https;branch=main;destsuffix=${GO_SRCURI_DESTSUFFIX}"
# Pin the commit you build (SRCREV:pn-tandem = "<commit>" in local.conf or
# a .bbappend): AUTOREV needs the network at parse time.
SRCREV ?= "${AUTOREV}"
PV = "0.0+git"

GO_IMPORT = "github.com/tandem-ota/tandem"
GO_INSTALL = "${GO_IMPORT}/cmd/tandem"

require ${BPN}-licenses.inc
require ${BPN}-go-mods.inc

inherit go-mod go-mod-update-modules systemd deploy

# A static binary: tandem-init runs as the first process, and one binary
# serves every image. go.bbclass adds -buildmode=pie, which would need the
# dynamic loader.
export CGO_ENABLED = "0"
GOBUILDFLAGS:remove = "-buildmode=pie"
# HTTP/1.1 only, as make cross builds it (docs/packages.md): ~530 KB smaller.
GOBUILDFLAGS:append = " -tags=nethttpomithttp2"
GO_EXTRA_LDFLAGS = "-X ${GO_IMPORT}/internal/cli.Version=${PV}"

TANDEM_SRC = "${S}/src/${GO_IMPORT}"

do_install:append() {
	install -d ${D}${sbindir}
	ln -sf ../bin/tandem ${D}${sbindir}/tandem-init
	ln -sf tandem ${D}${bindir}/rugix-ctrl
	install -d ${D}${systemd_system_unitdir}
	install -m 0644 ${TANDEM_SRC}/systemd/*.service ${TANDEM_SRC}/systemd/*.timer ${D}${systemd_system_unitdir}/
	install -d ${D}${sysconfdir}/tandem/keys
	install -d ${D}${datadir}/tandem/bootloader/grub ${D}${datadir}/tandem/bootloader/u-boot
	install -m 0644 ${TANDEM_SRC}/bootloader/grub/tandem.cfg ${D}${datadir}/tandem/bootloader/grub/
	install -m 0644 ${TANDEM_SRC}/bootloader/u-boot/boot.cmd ${D}${datadir}/tandem/bootloader/u-boot/
}

# tandem.cfg for the EFI system partition of a tandem-image disk.
do_deploy() {
	install -m 0644 ${TANDEM_SRC}/bootloader/grub/tandem.cfg ${DEPLOYDIR}/tandem.cfg
}
do_deploy:class-native() {
	:
}
addtask deploy after do_install before do_build

PACKAGES =+ "${PN}-rugix-ctrl"
FILES:${PN}-rugix-ctrl = "${bindir}/rugix-ctrl"
RDEPENDS:${PN}-rugix-ctrl = "${PN}"
FILES:${PN} += "${datadir}/tandem"

# Started by default: the health check that commits or rolls back a trial.
# The fleet units (tandem-hawkbit, -memfault, -tedge, -watch) are installed,
# not enabled: each needs its own configuration.
SYSTEMD_SERVICE:${PN} = "tandem-health.service tandem-health.timer"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# tandem-native builds bundles on the build host (tandem-bundle.bbclass).
BBCLASSEXTEND = "native"
