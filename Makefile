# `make serve` and `make test` do all their own set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
APT_PACKAGES := chromium postgresql
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)

.PHONY: setup test-setup test lint serve ui clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-bench.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-bench.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing >/dev/null; \
	fi
	touch $@

test-setup: $(VENV)/.test-installed

lint: test-setup
	$(BIN)/ruff check .

test: test-setup
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2 --dist loadfile  # two workers, one test file each at a time

serve: setup
	$(BIN)/pneumonia-zoo register-starter --dir models/starter
	$(BIN)/pneumonia-zoo serve --host $(HOST) --port $(PORT)

ui: setup
	$(BIN)/pneumonia-zoo ui

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
