# The two set-up commands the README promises: `make run` and `make test`.
.PHONY: run test test-rust test-browser test-fuzz test-sam test-sam-local test-bench test-clock-ahead test-hostile bench local-bin lint fmt venv

VENV := .venv
# checkov pins dependencies the SAM CLI's cannot share: it gets a venv of its own.
CHECKOV_VENV := .venv-checkov
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The browser tests drive Debian's chromium; the Makefile installs it when missing.
CHROMIUM := /usr/bin/chromium
BROWSER_DIR := tests/browser
ETP_BIN := $(CURDIR)/target/debug/etp-local
# The load generator of the benchmark suite.
WRK := /usr/bin/wrk
FAKETIME := /usr/bin/faketime
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The whole platform locally on http://127.0.0.1:3000 (only Rust needed).
run:
	cargo run --profile local -p local

# Every test: unit, contract (SQLite and DynamoDB on moto), API, timer, black-box, SAM checks,
# then the dashboard and /docs in a real browser, then OpenAPI fuzzing.
# Prints how long it took: on a fresh 2-core machine it must stay under 30 minutes.
test:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory test-rust test-sam test-sam-local test-browser test-fuzz test-bench; \
	status=$$?; took=$$(( $$(date +%s) - start )); \
	echo "make test: $$([ $$status = 0 ] && echo passed || echo FAILED) in $$((took / 60)) min $$((took % 60)) s (budget: 30 min on 2 cores)"; \
	exit $$status

test-rust: $(VENV)/.installed
	cargo test --workspace --all-features

# The real etp-local attacked with every hostile input class (also part of test-rust): prints
# `N passed, M failed`.
test-hostile:
	cargo test -p local --test hostile

# Every debug binary, with the features `cargo test --workspace --all-features` resolved, so the
# dependencies it built are reused rather than built again with other features (disk and time).
DEBUG_BUILD := cargo build --workspace --all-features --all-targets

# One debug build of the server, shared by the browser and fuzz tests.
local-bin:
	$(DEBUG_BUILD)

test-browser: local-bin $(CHROMIUM) $(BROWSER_DIR)/node_modules/.installed
	cd $(BROWSER_DIR) && ETP_BIN=$(ETP_BIN) CHROMIUM=$(CHROMIUM) node --test --test-concurrency=1 dashboard.test.mjs

test-fuzz: local-bin $(VENV)/.installed $(FAKETIME)
	ETP_BIN=$(ETP_BIN) tests/fuzz/run
	ETP_BIN=$(ETP_BIN) tests/fuzz/weekdays

# The deployable path: template lint, SAM's own validation, the template as CloudFormation
# receives it (expanded by SAM's translator: cfn-lint, IAM policy lint, dangling references), and
# a real `sam build` (cargo-lambda cross-compiles the three functions for arm64 with zig from the
# venv; no Docker). The arm64 target is added first: three parallel cargo-lambda builds would
# otherwise race to install it.
test-sam: $(VENV)/.installed $(CHECKOV_VENV)/.installed
	cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 sam validate --lint --region us-east-1
	$(VENV)/bin/python tests/sam/check_template.py
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov -f target/sam/expanded.json --config-file tests/sam/checkov.yaml
	rustup target add aarch64-unknown-linux-gnu
	SAM_CLI_TELEMETRY=0 sam build

# `sam local start-api` and `sam local invoke` end to end: the functions `sam build` made, in
# Docker (arm64 through qemu on x86_64), against moto. As root it installs docker.io and qemu when
# missing and starts dockerd if none runs; where Docker cannot run it prints
# `sam-local: SKIPPED: <reason>` and passes. About 40 s after test-sam's build.
test-sam-local: $(VENV)/.installed test-sam
	tests/sam-local/run

# The benchmark suite at a tiny size, so it cannot rot; its figures mean nothing. Runs after
# test-sam, whose `sam build` output gives the functions' zip sizes.
test-bench: $(VENV)/.installed $(WRK)
	$(DEBUG_BUILD)
	target/debug/bench --smoke

# The full benchmark suite (10 to 15 minutes on 2 cores): table on stdout, JSON and SVG charts under
# target/bench/. The server runs as `make run` builds it (profile `local`), the functions as
# Lambda gets them (profile `release`).
bench: $(VENV)/.installed $(WRK)
	SAM_CLI_TELEMETRY=0 sam build
	cargo build --profile local -p bench -p local
	cargo build --release -p functions
	target/local/bench

# Every Rust test binary (and moto, the server and the functions they start) with the clock a
# year ahead (libfaketime): no test may hide a date the real clock will pass. About 5 minutes.
test-clock-ahead: $(VENV)/.installed $(FAKETIME)
	tests/clock-ahead/run +365d

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

fmt:
	cargo fmt --all

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: tests/sam/requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/sam/requirements-checkov.txt
	touch $@

$(WRK):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk

$(FAKETIME):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y faketime

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

$(BROWSER_DIR)/node_modules/.installed: $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund
	touch $@
