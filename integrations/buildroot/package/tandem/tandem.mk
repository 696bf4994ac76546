################################################################################
#
# tandem
#
################################################################################

TANDEM_VERSION = $(call qstrip,$(BR2_PACKAGE_TANDEM_VERSION))
TANDEM_SITE = $(call github,tandem-ota,tandem,$(TANDEM_VERSION))
# tandem's repository declares no licence yet (no LICENSE file): set
# TANDEM_LICENSE and TANDEM_LICENSE_FILES once it does.
TANDEM_GOMOD = github.com/tandem-ota/tandem
TANDEM_BUILD_TARGETS = cmd/tandem
TANDEM_LDFLAGS = -X github.com/tandem-ota/tandem/internal/cli.Version=$(TANDEM_VERSION)
# HTTP/1.1 only, as make cross builds it (docs/packages.md): ~530 KB smaller.
TANDEM_TAGS = nethttpomithttp2
# Static, whatever the toolchain: tandem-init runs as the first process.
TANDEM_GO_ENV = CGO_ENABLED=0
HOST_TANDEM_GO_ENV = CGO_ENABLED=0

TANDEM_SYSTEM_TOML = $(call qstrip,$(BR2_PACKAGE_TANDEM_SYSTEM_TOML))
TANDEM_KEYS = $(call qstrip,$(BR2_PACKAGE_TANDEM_KEYS))

define TANDEM_INSTALL_FILES
	$(INSTALL) -d -m 0755 $(TARGET_DIR)/usr/sbin $(TARGET_DIR)/etc/tandem/keys
	ln -sf ../bin/tandem $(TARGET_DIR)/usr/sbin/tandem-init
	$(INSTALL) -D -m 0644 $(@D)/bootloader/grub/tandem.cfg $(TARGET_DIR)/usr/share/tandem/bootloader/grub/tandem.cfg
	$(INSTALL) -D -m 0644 $(@D)/bootloader/u-boot/boot.cmd $(TARGET_DIR)/usr/share/tandem/bootloader/u-boot/boot.cmd
	$(if $(TANDEM_SYSTEM_TOML),$(INSTALL) -D -m 0644 $(TANDEM_SYSTEM_TOML) $(TARGET_DIR)/etc/tandem/system.toml)
	$(foreach k,$(TANDEM_KEYS),$(INSTALL) -m 0644 $(k) $(TARGET_DIR)/etc/tandem/keys/$(notdir $(k))$(sep))
	$(if $(BR2_PACKAGE_TANDEM_RUGIX_CTRL),ln -sf tandem $(TARGET_DIR)/usr/bin/rugix-ctrl)
endef
TANDEM_POST_INSTALL_TARGET_HOOKS += TANDEM_INSTALL_FILES

# The health check (commit or roll back a trial) is enabled; the fleet units
# are installed and left for the image to enable (each needs a configuration).
define TANDEM_INSTALL_INIT_SYSTEMD
	$(foreach u,$(notdir $(wildcard $(@D)/systemd/*.service $(@D)/systemd/*.timer)),\
		$(INSTALL) -D -m 0644 $(@D)/systemd/$(u) $(TARGET_DIR)/usr/lib/systemd/system/$(u)$(sep))
	$(INSTALL) -d $(TARGET_DIR)/usr/lib/systemd/system-preset
	printf 'enable tandem-health.service\nenable tandem-health.timer\n' > \
		$(TARGET_DIR)/usr/lib/systemd/system-preset/80-tandem.preset
endef

$(eval $(golang-package))
$(eval $(host-golang-package))
