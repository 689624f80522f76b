# Developer entry points. CI runs `make test` (via .ci/run).
CARGO ?= cargo

.PHONY: run build test lint fmt deps web package bench

run: web
	$(CARGO) run --release -- $(ARGS)

build: web
	$(CARGO) build --release

# The browser client (web/, TypeScript + Vite) into web/dist, which the binary embeds.
web:
	scripts/build-web.sh

deps:
	scripts/test-deps.sh

# Real peers (MariaDB, aiosmtpd, Chromium, coturn, pebble) are installed by scripts/test-deps.sh.
test: export APPLIANCE_TEST_PYTHON ?= /var/tmp/meeting-appliance-venv/bin/python
test: deps
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# Benchmarks (figures in BENCHMARKS.md): criterion micro-benchmarks of the hot path, then the
# SFU against Janus and the raw forwarder and the stepping loadtests, then TURN against coturn. Server
# pinned to CPU 1, generator to CPU 0, inside a private network namespace.
bench:
	$(CARGO) bench --bench hot_path
	$(CARGO) build --release --bin meeting-appliance --example raw_forwarder
	scripts/bench-sfu.sh
	scripts/bench-turn.sh

# .deb and .rpm of the release binary (web client embedded), linted: target/debian/, target/generate-rpm/.
package:
	scripts/package.sh
