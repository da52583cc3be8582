# `make serve` and `make test` do all their own set-up on a fresh machine.
#
#   make setup                      the serving, training and benchmark packages (requirements-setup.lock)
#   make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
#                                   the same with CPU-only torch: about 0.7 GB for torch and torchvision
#                                   instead of 5.3 GB (PyPI's Linux torch brings CUDA libraries and triton);
#                                   the whole venv about 2 GB instead of 6.5 GB. torch and torchvision
#                                   then come pinned by version (not hash); the rest still by hash.
#   make test                       + test tools (requirements-test.lock); lint, format, types, pytest
#   make test-container             builds both images (the default one without PyTorch, --target full)
#                                   and tests them in a real Docker engine (tests/container)
#   make lock                       re-resolve requirements*.lock from requirements*.txt (needs the index)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
UI_PORT ?= 5000
# Empty: torch from the lock (PyPI's build, hashes checked). A URL: torch and torchvision from there.
TORCH_INDEX_URL ?=
APT_PACKAGES := chromium postgresql
APT_GET := $(shell [ "$$(id -u)" = 0 ] && echo apt-get || echo sudo apt-get)
# Per-test limit: the slowest tests (real training, the install replay) take a few minutes.
PYTEST_TIMEOUT ?= 900
# The first container test also builds the images (a cold build: about 10 minutes here).
CONTAINER_TEST_TIMEOUT ?= 2400
# Every lock holds the serving pins and the build backend install.sh builds the project with, offline.
BUILD_PINS := requirements.txt requirements-build.txt
UV_COMPILE = $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

.PHONY: setup test-setup test lint typecheck serve ui results-ui clean lock test-container

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-setup.lock docker/install.sh pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PIP_QUIET=1 LOCK=requirements-setup.lock TORCH_INDEX_URL="$(TORCH_INDEX_URL)" docker/install.sh $(VENV) . deps
	PIP_QUIET=1 EDITABLE=1 docker/install.sh $(VENV) . project
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.lock
	PIP_QUIET=1 LOCK=requirements-test.lock TORCH_INDEX_URL="$(TORCH_INDEX_URL)" docker/install.sh $(VENV) . deps
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$missing >/dev/null; \
	fi
	touch $@

test-setup: $(VENV)/.test-installed

# The three locks resolve together: the test lock first, the others constrained to its versions. uv keeps
# the versions an existing lock has (what the tests ran with) unless a pin needs another: UPGRADE=1
# re-resolves every transitive package to the newest allowed.
lock:
	@[ -x $(BIN)/uv ] || $(PYTHON) -m pip install --quiet uv
	$(UV_COMPILE) $(BUILD_PINS) requirements-torch.txt requirements-train.txt requirements-bench.txt \
		requirements-test.txt -o requirements-test.lock
	$(UV_COMPILE) $(BUILD_PINS) requirements-torch.txt requirements-train.txt requirements-bench.txt \
		-c requirements-test.lock -o requirements-setup.lock
	$(UV_COMPILE) $(BUILD_PINS) requirements-torch.txt -c requirements-test.lock -o requirements-full.lock
	$(UV_COMPILE) $(BUILD_PINS) -c requirements-test.lock -o requirements.lock

lint: test-setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: test-setup
	$(BIN)/mypy pneumonia_zoo

test: test-setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pneumonia_zoo
	# two workers, one test file each at a time
	$(BIN)/pytest -n 2 --dist loadfile --timeout $(PYTEST_TIMEOUT)

# A real Docker engine (docker.io installed when missing, dockerd started when none runs and stopped
# afterwards); every container, volume and network the tests make is removed. PYTHON_IMAGE: the base
# to test on (default: the official image where it can be pulled, else the local Debian base).
test-container: test-setup
	@docker info >/dev/null 2>&1 || command -v dockerd >/dev/null || { \
		echo "installing docker.io"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq docker.io >/dev/null; }
	PNEUMONIA_ZOO_CONTAINER_TESTS=1 nice -n 10 $(BIN)/pytest tests/container -p no:xdist \
		--timeout $(CONTAINER_TEST_TIMEOUT) -v
	@cat test-artifacts/container-report.json  # build times, image sizes, start and stop times

serve: setup
	$(BIN)/pneumonia-zoo register-starter
	$(BIN)/pneumonia-zoo serve --host $(HOST) --port $(PORT)

ui: setup
	$(BIN)/pneumonia-zoo ui --port $(UI_PORT)

# The MLflow UI on the store of the README's results (results/store, committed).
results-ui: setup
	MLFLOW_TRACKING_URI=sqlite:///results/store/mlflow.db $(BIN)/pneumonia-zoo ui --port $(UI_PORT)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache test-artifacts
