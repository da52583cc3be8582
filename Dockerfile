# syntax=docker/dockerfile:1
# Pneumonia Zoo service images: one uvicorn process serving the app factory on port 8000.
#
#   docker build -t pneumonia-zoo .                         the default: ONNX Runtime, no PyTorch
#   docker build --target full -t pneumonia-zoo:full .      the same plus PyTorch (CPU wheels)
#   docker run -p 8000:8000 -e MLFLOW_TRACKING_URI=http://tracking-server:5000 pneumonia-zoo
#
# The default image serves every registered version that has an ONNX export (training exports one unless
# --no-onnx), and explains it: from the ONNX activations where the CAM is linear (EfficientNet-Lite,
# ResNet50, the small CNN); for the others (VGG16, DenseNet201, AlexNet, ViT) the page says that this
# image has no Grad-CAM and shows the prediction without a heatmap. A version without ONNX is refused
# at load with one line in /readyz and the log: serve it from the full image.
#
# Where Docker Hub cannot be reached: --build-arg PYTHON_IMAGE="$(docker/base-image.sh)" (a local Debian
# bookworm base), and for the full image --build-arg TORCH_INDEX_URL= where PyTorch's CPU index cannot be
# reached either (PyPI's torch then: a CUDA build, several GB larger). `make test-container` builds and
# tests both. The legacy builder (DOCKER_BUILDKIT=0) builds every stage before the target, so there the
# default image also builds the full one's stages (cached afterwards); BuildKit skips them.
#
# The install steps live in docker/install.sh, which `make setup` runs too and tests/deploy/
# test_install_replay.py replays in a fresh virtual environment (it reads the RUN and COPY lines below),
# so keep installs in that script.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtual environment at /opt/venv: the serving lock's packages (hashes checked; no
# --- PyTorch), then the project itself, not editable (its pages, static files, sample images and starter
# --- are package data)
FROM ${PYTHON_IMAGE} AS builder
# Marks this stage's images (the legacy builder keeps them as its cache) so that stale ones can be found.
LABEL org.pneumonia-zoo.stage=builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock file or the script changes.
COPY requirements.lock ./
COPY docker/install.sh docker/install.sh
RUN docker/install.sh /opt/venv . deps

COPY pyproject.toml README.md ./
COPY pneumonia_zoo/ pneumonia_zoo/
# Then slim: test suites of installed packages and C++ headers go; byte code is compiled once (the root
# filesystem may be read-only at run time).
RUN docker/install.sh /opt/venv . project slim

# --- service: what both images share: the user, the start script, the settings, the health check
FROM ${PYTHON_IMAGE} AS service

LABEL org.opencontainers.image.title="pneumonia-zoo" \
      org.opencontainers.image.description="Chest X-ray pneumonia classifier served by FastAPI" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

# Owned by root and read-only for the service user, which writes only to /tmp (a tmpfs in production:
# `docker run --read-only --tmpfs /tmp` works). The virtual environment comes in the last two stages.
COPY docker/serve.sh /usr/local/bin/pneumonia-zoo-serve

# Everything is configurable at `docker run -e` / in the orchestrator:
#   MLFLOW_TRACKING_URI                   the tracking server holding the registry (http://host:5000)
#   PNEUMONIA_ZOO_REGISTERED_MODEL_NAME   registered model to serve (default pneumonia-classifier)
#   PNEUMONIA_ZOO_CHAMPION_ALIAS          alias to serve and follow (default champion)
#   PNEUMONIA_ZOO_RELOAD_INTERVAL_S       how often the alias is re-checked (default 30; 0 = never)
#   PNEUMONIA_ZOO_*                       every other setting in pneumonia_zoo/config.py (upload and batch
#                                         limits, runtime, admin token)
#   HOST, PORT                            where uvicorn listens (default 0.0.0.0:8000)
#   REGISTER_STARTER                      1 (default): an empty registry gets the starter model; 0: never
# The default store is a SQLite file in /tmp: the image's starter model becomes its champion, so the
# container serves on its own; set MLFLOW_TRACKING_URI to a server to serve what the team promoted.
# FORWARDED_ALLOW_IPS: the proxies whose X-Forwarded-* headers uvicorn believes (comma-separated
# addresses or CIDR ranges). Only the container itself by default: trusting everyone ("*") would let any
# client set its own address, scheme and host. Behind Azure Container Apps' ingress, set it to the
# environment's infrastructure subnet (e.g. 10.0.0.0/23), the only addresses the ingress connects from.
# MALLOC_ARENA_MAX: two glibc arenas instead of up to 8 per core, so memory freed after a burst is not
# spread over arenas that keep it (`pneumonia-zoo serve` sets the same where it is unset).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/cache \
    GIT_PYTHON_REFRESH=quiet \
    MALLOC_ARENA_MAX=2 \
    MLFLOW_TRACKING_URI=sqlite:////tmp/mlflow.db \
    FORWARDED_ALLOW_IPS=127.0.0.1

WORKDIR /home/app
USER 10001:10001
EXPOSE 8000

# python, not curl: the slim image has no curl. /healthz answers as soon as the process serves; PORT
# is read so that the check follows `-e PORT=...` (host networking).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# pneumonia-zoo-serve (docker/serve.sh) registers the starter model when the registry has no champion
# (REGISTER_STARTER=0: off), then execs one uvicorn process: uvicorn is PID 1 and handles SIGTERM.
CMD ["/usr/local/bin/pneumonia-zoo-serve"]

# --- builder-full: the serving environment plus PyTorch, torchvision, grad-cam and timm
FROM builder AS builder-full
# PyTorch's CPU wheel index: torch and torchvision without CUDA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# requirements-full.lock = the serving lock + requirements-torch.txt: what is installed already stays.
COPY requirements-full.lock ./
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" LOCK=requirements-full.lock docker/install.sh /opt/venv . deps slim

# --- full (`--target full`): every version, with or without ONNX; Grad-CAM for every architecture
FROM service AS full
COPY --from=builder-full /opt/venv /opt/venv

# --- slim, the default (the last stage): ONNX Runtime, no PyTorch
FROM service AS slim
COPY --from=builder /opt/venv /opt/venv
