# posbridge — the two commands: `make run` (demo daemon) and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DEMO_CONFIG ?= config/demo.toml
FUZZ_SECONDS ?= 10
# CI builds once: incremental-compilation caches would only take disk (~300 MB).
ifdef CI
export CARGO_INCREMENTAL := 0
endif
# Where cargo puts binaries (honours CARGO_TARGET_DIR).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/debug/posbridge

.PHONY: run build release test deps lint unit test-browser test-arm64 fuzz fuzz-smoke prune-debug bench fleet-sim deb clean
# Stages run one after another: prune-debug must not delete a build in use.
.NOTPARALLEL:

## Build and start a demo daemon: simulated devices, no hardware, no HQ.
run:
	bash scripts/install-test-deps.sh --build
	$(CARGO) build --locked
	@echo "posbridge demo: open http://127.0.0.1:8731/ — feed it with:"
	@echo "  $(BIN) simulate scanner-1 6901234567892 --config $(DEMO_CONFIG)"
	$(BIN) run --config $(DEMO_CONFIG)

build:
	bash scripts/install-test-deps.sh --build
	$(CARGO) build --locked

release:
	$(CARGO) build --locked --release

## Install what the tests need (apt packages as root or via sudo; npm modules), then run every test.
## On CI (CI set) each stage's build is deleted once it has run: CI machines have little disk.
test: deps lint unit test-browser test-arm64 $(if $(CI),prune-debug) fuzz-smoke

deps:
	bash scripts/install-test-deps.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy --locked --test arm64 -- -D warnings

unit:
	$(CARGO) test --workspace --locked

## A real Chromium against the real daemon: allowed vs foreign origins, the status page;
## then QZ Tray pages with the real qz-tray.js (2.2.6 and 2.3.0) printing through posbridge.
test-browser:
	$(CARGO) build --locked
	POSBRIDGE_BIN=$(BIN) node tests/browser/run.mjs
	POSBRIDGE_BIN=$(BIN) node tests/browser/qz.mjs

## Each fuzz target for a short run over its corpus of real frames (CI); `make fuzz` runs longer.
fuzz-smoke:
	FUZZ_PRUNE=$(if $(CI),1) bash scripts/fuzz.sh $(FUZZ_SECONDS)

prune-debug:
	rm -rf $(TARGET_DIR)/debug

fuzz:
	bash scripts/fuzz.sh 600

## A fleet at full size (issue 24; `make test` runs it small): 50 real daemons with a
## backlog against mosquitto restarted mid-drain, then a store failing over between the
## nodes of a two-node RabbitMQ cluster. Figures in $(TARGET_DIR)/fleet-sim.txt.
FLEET_STORES ?= 50
FLEET_TX ?= 200
fleet-sim:
	mkdir -p $(TARGET_DIR)
	rm -f $(TARGET_DIR)/fleet-sim.txt
	FLEET_STORES=$(FLEET_STORES) FLEET_TX=$(FLEET_TX) FLEET_REPORT=$(TARGET_DIR)/fleet-sim.txt \
	  $(CARGO) test --locked --release --test it fleet_sim -- --nocapture --test-threads=1
	cat $(TARGET_DIR)/fleet-sim.txt

## Latency, throughput, footprint and durability cost, each beside its baseline (BENCHMARKS.md):
## JSON lines on stdout and in $(TARGET_DIR)/bench/results.jsonl. Needs mosquitto.
bench:
	$(CARGO) build --locked --release
	mkdir -p $(TARGET_DIR)/bench
	set -o pipefail; $(CARGO) bench --locked --bench bench | tee $(TARGET_DIR)/bench/results.jsonl

## The Debian package, by debhelper (debian/): binary, unit, sysusers/tmpfiles, udev rules,
## man pages, completions, /etc config as a conffile. Checked with lintian.
## ARCH=arm64 cross-builds it (Debian's cross gcc, rustup's aarch64 target; installed here).
# Debian's name for it, from the command line; an ARCH in the environment
# (often uname's x86_64) is not one.
ifneq ($(origin ARCH),command line)
ARCH := $(shell dpkg --print-architecture)
endif
ifeq ($(ARCH),arm64)
DEB_BIN := $(TARGET_DIR)/aarch64-unknown-linux-gnu/release/posbridge
DEB_DEPS := --arm64
DEB_TARGET := --target aarch64-unknown-linux-gnu
else
DEB_BIN := $(TARGET_DIR)/release/posbridge
DEB_DEPS := --package
DEB_TARGET :=
endif
deb:
	bash scripts/install-test-deps.sh $(DEB_DEPS)
	$(CARGO) build --locked --release $(DEB_TARGET)
	$(CARGO) build --locked
	GENERATOR=$(BIN) bash packaging/build-deb.sh $(DEB_BIN) $(TARGET_DIR)/deb "" $(ARCH)
	lintian --fail-on error,warning $(TARGET_DIR)/deb/posbridge_*_$(ARCH).deb

## The arm64 build under qemu-user (tests/arm64.rs): a debug cross build without debug
## info, to keep CI short; `make deb ARCH=arm64` is the release build.
ARM64_BIN := $(TARGET_DIR)/aarch64-unknown-linux-gnu/debug/posbridge
test-arm64:
	bash scripts/install-test-deps.sh --arm64
	CARGO_PROFILE_DEV_DEBUG=0 $(CARGO) build --locked --bin posbridge --target aarch64-unknown-linux-gnu
	POSBRIDGE_ARM64_BIN=$(ARM64_BIN) $(CARGO) test --locked --test arm64 -- --test-threads=1
	$(if $(CI),rm -rf $(TARGET_DIR)/aarch64-unknown-linux-gnu)

clean:
	$(CARGO) clean
