package sim

// controllerScript is the example boot controller of simulated devices with
// the custom flow (protocol: docs/boot-flows.md, "custom"). It keeps its state
// in one small file replaced atomically (write, sync, rename, sync).
const controllerScript = `#!/bin/sh
# Example boot controller for tandem's custom boot flow.
# usage: sim-boot-controller default|try-next GROUP|cancel-try|commit GROUP|boot
set -eu
state="${TANDEM_ROOT:-}/boot/controller/state"

load() {
	default=; trial=; left=0
	while IFS='=' read -r k v; do
		case "$k" in
		default) default=$v ;;
		trial) trial=$v ;;
		left) left=$v ;;
		esac
	done < "$state"
}

save() {
	printf 'default=%s\ntrial=%s\nleft=%s\n' "$default" "$trial" "$left" > "$state.new"
	sync "$state.new"
	mv "$state.new" "$state"
	sync "$(dirname "$state")"
}

load
case "${1:-}" in
default) printf '{"group":"%s"}\n' "$default" ;;
try-next) trial=$2; left=${TANDEM_ATTEMPTS:-1}; save; echo '{}' ;;
cancel-try) trial=; left=0; save; echo '{}' ;;
commit) default=$2; trial=; left=0; save; echo '{}' ;;
boot)
	group=$default
	if [ -n "$trial" ] && [ "$left" -gt 0 ]; then
		left=$((left - 1)); group=$trial; save
	fi
	printf '{"group":"%s"}\n' "$group" ;;
*) echo "unknown operation: ${1:-}" >&2; exit 2 ;;
esac
`
