# tandem — see README.md. `make demo` and `make test` work from a fresh clone on Debian.
GO            ?= go
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
MAX_BINARY    := 12000000
# nethttpomithttp2: the device binary speaks HTTP/1.1 only (range requests and
# their parallel connections need nothing of HTTP/2); it saves ~530 KB.
BUILD_TAGS    := nethttpomithttp2
LDFLAGS       := -s -w -X github.com/tandem-ota/tandem/internal/cli.Version=$(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: all build demo demo-qemu deps test lint unit cross deb fuzz bench bench-delta clean test-e2e e2e-ci

all: build

build:
	CGO_ENABLED=0 $(GO) build -tags $(BUILD_TAGS) -trimpath -ldflags '$(LDFLAGS)' -o bin/tandem ./cmd/tandem

demo: build
	bash scripts/demo.sh bin/tandem

# A disk image built by `tandem image build` from Debian packages, booted in QEMU, updated by delta
# over HTTP from inside the guest, rebooted into the trial and committed (tools/demoqemu; not in `make test`).
demo-qemu: build
	$(GO) run ./tools/demoqemu -tandem bin/tandem

# Installs (idempotently) the Debian packages the tests drive: grub-editenv, casync,
# fw_printenv/fw_setenv, mkenvimage, grub-script-check, openssl, nginx.
deps:
	bash scripts/install-deps.sh

test: deps lint unit cross e2e-ci

# Real-boot tests (docs/testing.md): disk images booted by the real GRUB and systemd-boot
# (and U-Boot) under QEMU without KVM. test-e2e runs everything; e2e-ci the subset `make test` runs.
E2E_TIMEOUT ?= 90m
test-e2e: deps
	TANDEM_E2E=1 $(GO) test -count=1 -timeout $(E2E_TIMEOUT) -v ./e2e

e2e-ci: deps
	TANDEM_E2E=ci $(GO) test -count=1 -timeout 45m -v ./e2e

lint:
	test -z "$$(gofmt -l . | tee /dev/stderr)"
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

unit:
	$(GO) test -count=1 ./...

# Cross-builds the static binary and fails if a stripped one exceeds 12 MB.
cross:
	@set -e; for t in arm64: arm:7 riscv64: amd64:; do \
		arch=$${t%%:*}; arm=$${t#*:}; out=bin/tandem-linux-$$arch; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm $(GO) build -tags $(BUILD_TAGS) -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/tandem; \
		size=$$(stat -c %s $$out); echo "$$out: $$size bytes"; \
		if [ $$size -gt $(MAX_BINARY) ]; then echo "$$out is larger than $(MAX_BINARY) bytes" >&2; exit 1; fi; \
	done

# Debian packages (docs/packages.md) in dist/: tandem for amd64, arm64 and armhf from the
# static binaries `cross` builds, tandem-rugix-ctrl (all), checked by lintian; then SHA256SUMS,
# signed into SHA256SUMS.sig when SIGN_KEY names a tandem signing key (tandem key generate).
DEB_MAINTAINER ?= tandem maintainers <maintainers@tandem-ota.invalid>
deb: cross
	@command -v lintian >/dev/null || bash scripts/install-deps.sh
	rm -rf dist
	$(GO) run ./tools/debpkg build -out dist -maintainer '$(DEB_MAINTAINER)' \
		bin/tandem-linux-amd64=amd64 bin/tandem-linux-arm64=arm64 bin/tandem-linux-arm=armhf
	lintian --fail-on error,warning dist/*.deb
	$(GO) run ./tools/debpkg sums $(if $(SIGN_KEY),-key '$(SIGN_KEY)') dist

# Runs every fuzz target for FUZZTIME each (default 10s).
FUZZTIME ?= 10s
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

# Benchmarks (docs/benchmarks.md): minutes and a few GiB in $$BENCH_DIR; not part of `make test`.
bench:
	bash bench/run.sh

bench-delta:
	bash bench/delta.sh

clean:
	rm -rf bin dist
