# tandem-bundle: a signed tandem bundle of the image's ext4 root filesystem,
# as an image type. Inherit it in the image recipe (with tandem-image); the
# bundle is ${IMAGE_NAME}.tandem in the deploy directory.

# The signing key (PEM: tandem key generate, or openssl); required.
TANDEM_SIGNING_KEY ??= ""
# The bundle's version; must be orderable by tandem (semantic or dotted numbers).
TANDEM_BUNDLE_VERSION ??= "${DISTRO_VERSION}"

IMAGE_TYPES:append = " tandem"
IMAGE_FSTYPES:append = " tandem"
IMAGE_TYPEDEP:tandem = "ext4"
do_image_tandem[depends] += "tandem-native:do_populate_sysroot"

IMAGE_CMD:tandem() {
	if [ -z "${TANDEM_SIGNING_KEY}" ]; then
		bbfatal "tandem-bundle: set TANDEM_SIGNING_KEY (a PEM private key)"
	fi
	tandem bundle create ${IMGDEPLOYDIR}/${IMAGE_NAME}.tandem \
		--compatible "${TANDEM_COMPATIBLE}" --version "${TANDEM_BUNDLE_VERSION}" \
		--slot system=${IMGDEPLOYDIR}/${IMAGE_NAME}.ext4 --key ${TANDEM_SIGNING_KEY}
}
