# cfs-compose build, test and demo entry points.
#
# The machines default to Go 1.26.8 with GOTOOLCHAIN=local; the module needs
# Go 1.27.3, which the go command fetches from the module proxy.
export GOTOOLCHAIN := go1.27.3
# Pure-Go build: no cgo, and the go.podman.io/image build tags that drop the
# transports and graph drivers needing C libraries.
export CGO_ENABLED := 0
TAGS := containers_image_openpgp,exclude_graphdriver_btrfs,containers_image_storage_stub,containers_image_docker_daemon_stub
export GOFLAGS := -buildvcs=false -tags=$(TAGS)

SHELL    := /bin/bash
GO       ?= go
BIN      := bin/cfs-compose
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Debian packages the tests and the demo need (installed by `make deps`).
# python3 and python3-cryptography run trixie's virt-fw-vars (unpacked by
# `make fixtures`) for Secure Boot key enrollment; binutils' objcopy
# assembles the UKI of the testbed's disk boot test; libxml2-utils' xmllint
# validates the JUnit reports against testbed/testdata/junit.xsd. mmdebstrap
# builds the Debian trixie chroot whose ostree CLI is internal/ostree's
# oracle (cached in ${CFS_FIXTURES_CACHE:-/var/cache/cfs-compose/fixtures}/ostree-trixie,
# see internal/ostree/ostreetest; util-linux provides its unshare) and the
# Debian OS fixture (testbed/fixtures/osimage); arch-test, qemu-user-static
# and binfmt-support let it run the arm64 maintainer scripts on x86_64.
# docker-registry (the CNCF distribution registry) is the real registry the
# remote stage cache tests and the scale-out fan-out test run on 127.0.0.1
# (internal/regcache/regtest).
DEB_PACKAGES := e2fsprogs dosfstools mtools gdisk fdisk attr acl cpio xz-utils zstd \
	busybox-static qemu-system-x86 qemu-system-arm qemu-utils ovmf qemu-efi-aarch64 \
	sbsigntool osslsigncode erofs-utils fsverity openssl \
	python3 python3-cryptography python3-gi debian-archive-keyring binutils util-linux libxml2-utils \
	mmdebstrap arch-test qemu-user-static binfmt-support docker-registry

# The cosign CLI the signing interoperability tests run (bin/cosign).
COSIGN_VERSION := v2.6.5
COSIGN         := bin/cosign

.PHONY: all build test test-mkcomposefs test-short lint bench bench-boot demo deps fixtures clean cosign initbins

all: build

build: initbins
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cfs-compose

# initbins builds the static builtin-initramfs /init (cmd/cfs-init) for each
# target architecture into the directory stages/initramfs/initbin embeds.
# It also builds the static testbed agent, which the boot test delivers at
# boot into images whose init is systemd, into the directory
# testbed/agentbin embeds.
INITBIN_DIR := stages/initramfs/initbin
AGENTBIN_DIR := testbed/agentbin
initbins:
	@for a in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags "-s -w" -o $(INITBIN_DIR)/cfs-init-$$a ./cmd/cfs-init || exit 1; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags "-s -w" -o $(AGENTBIN_DIR)/cfs-agent-$$a ./testbed/agent || exit 1; \
	done

# deps installs the Debian packages and Go modules the tests need. It only
# calls apt-get when something is missing, so it is cheap on a ready machine.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install:$$missing" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(GO) mod download

# test runs every test for real; .ci/testgate fails the run when any test
# fails *or is skipped* (here every facility the tests need is installed),
# names each skip's own reason, and ends with "N passed, N failed, N
# skipped". ./... leaves out dot directories, so the gate's own tests are
# named explicitly.
test: deps initbins cosign fixtures
	set -o pipefail; CFS_REQUIRE_INITBINS=1 CFS_REQUIRE_FIXTURES=1 $(GO) test -count=1 -json -timeout 30m ./... ./.ci/testgate | $(GO) run ./.ci/testgate
	@if [ -n "$(MKCFS_ASSETS)" ]; then $(MAKE) --no-print-directory test-mkcomposefs; \
	else echo "note: mkcomposefs's own test suite not run: no copy of its assets (make test-mkcomposefs)"; fi

# test-mkcomposefs runs mkcomposefs's own test suite (containers/composefs
# tests/assets, run as its test-checksums.sh and test-should-fail.sh do)
# against our dumpfile parser and image writer. The assets are upstream's
# test data and are not in this repository: give a fetched copy with
# CFS_COMPOSEFS_ASSETS=DIR, or keep one in /var/cache/cfs-compose/mkcomposefs-assets
# or shared/composefs/mkcomposefs-assets beside the checkout. `make test` runs
# it when one is there.
MKCFS_ASSETS := $(firstword $(CFS_COMPOSEFS_ASSETS) $(wildcard /var/cache/cfs-compose/mkcomposefs-assets/special.dump) $(wildcard $(CURDIR)/../shared/composefs/mkcomposefs-assets/special.dump))
MKCFS_ASSETS := $(patsubst %/special.dump,%,$(MKCFS_ASSETS))
test-mkcomposefs:
	@if [ -z "$(MKCFS_ASSETS)" ]; then echo "test-mkcomposefs: set CFS_COMPOSEFS_ASSETS to a copy of containers/composefs tests/assets" >&2; exit 2; fi
	CFS_COMPOSEFS_ASSETS=$(MKCFS_ASSETS) $(GO) test -count=1 -tags=$(TAGS),mkcomposefs_assets -run 'TestMkcomposefs' ./internal/composefs

# cosign builds the cosign CLI into bin/ for the signing interoperability
# tests (github.com/sigstore/cosign/v2/cmd/cosign; ~5 minutes on 2 cores,
# once: skipped when bin/cosign already is $(COSIGN_VERSION)). Linking cosign
# into cfs-compose itself is avoided on purpose (~500 modules).
cosign:
	@if ! $(COSIGN) version 2>/dev/null | grep -Eq '^GitVersion: +$(COSIGN_VERSION)$$'; then \
		echo "building cosign $(COSIGN_VERSION) into bin/ (takes a few minutes)"; \
		GOBIN=$(CURDIR)/bin $(GO) install github.com/sigstore/cosign/v2/cmd/cosign@$(COSIGN_VERSION); \
	fi

# test-short skips the slow (QEMU, root, network-fetch) tests.
test-short: initbins
	$(GO) test -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# bench runs every benchmark, the boot-time ones included (they boot the
# fixtures, hence initbins and fixtures).
bench: initbins fixtures
	$(GO) test -run '^$$' -bench . -benchmem -timeout 90m ./...

# bench-boot measures the real OS's boot (testbed-os, composefs on) to
# multi-user.target and to the verdict on x86_64 and aarch64 under this
# host's accelerator, against the busybox testbed fixture booted in the
# same run (docs/testbed.md, "Boot time").
bench-boot: initbins fixtures
	$(GO) test -run '^$$' -bench 'BootTime' -benchtime 1x -timeout 60m ./stages/boottest

# demo runs the main job on the built-in testbed manifest: fetch the
# fixtures, build the testbed variant for x86_64 (composefs on) and boot-test
# it in QEMU as the build's last stage; the summary prints the verdict.
demo: deps fixtures build
	./$(BIN) validate
	./$(BIN) build --variant testbed --arch x86_64 --out out

# fixtures fetches the testbed's Debian packages (trixie 6.12 cloud kernel,
# busybox-static, systemd EFI stubs, virt-firmware, OVMF/AAVMF) through a
# private apt configuration into the fixture cache outside the checkout
# ($CFS_FIXTURES_CACHE, else /var/cache/cfs-compose/fixtures as root, else
# ~/.cache/cfs-compose/fixtures; internal/debfetch.CacheDir) and builds the
# fixture OCI layout oci:testbed/fixtures/build/oci:testbed. It also builds
# the Debian trixie OS fixture with mmdebstrap (as root) into
# <fixture cache>/os-oci, reference oci:<that dir>:testbed-os
# (docs/testbed.md). Offline once the caches are complete.
fixtures:
	$(GO) run ./testbed/fixtures/cmd/mkfixtures

clean:
	rm -rf bin
