# The two set-up commands the README promises: `make run` and `make test`.
.PHONY: run test lint fmt venv

VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The whole platform locally on http://127.0.0.1:3000 (only Rust needed).
run:
	cargo run --release -p local

# Every test: unit, contract (SQLite and DynamoDB on moto), API, timer, black-box, SAM checks.
test: $(VENV)/.installed
	cargo test --workspace --all-features

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
