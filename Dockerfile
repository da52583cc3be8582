# syntax=docker/dockerfile:1
# Pneumonia Zoo service image: CPU-only PyTorch, one uvicorn process serving fastapiapp:app on port 8000.
#
#   docker build -t pneumonia-zoo .
#   docker run -p 8000:8000 -e MLFLOW_TRACKING_URI=http://tracking-server:5000 pneumonia-zoo
#
# The install steps live in docker/install.sh, which tests/deploy/test_install_replay.py replays in a
# fresh virtual environment (it reads the RUN and COPY lines below), so keep installs in that script.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtual environment at /opt/venv with torch (CPU wheels), requirements.txt, the project
FROM ${PYTHON_IMAGE} AS builder

# PyTorch's CPU wheel index: torch and torchvision without CUDA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# /app in both stages: the project is installed editable (it finds templates/ and static/ beside itself).
WORKDIR /app
# Dependencies first: this layer is rebuilt only when requirements.txt or the script changes.
COPY requirements.txt ./
COPY docker/install.sh docker/install.sh
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" docker/install.sh /opt/venv . deps

COPY pyproject.toml README.md ./
COPY pneumonia_zoo/ pneumonia_zoo/
RUN docker/install.sh /opt/venv /app project

# --- runtime: the virtual environment, the app module, its pages and the starter model; no build tools
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="pneumonia-zoo" \
      org.opencontainers.image.description="Chest X-ray pneumonia classifier served by FastAPI" \
      org.opencontainers.image.licenses="MIT"

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Owned by root and read-only for the service user; it writes only to /tmp and its home.
# pneumonia_zoo/ is where the editable install in /opt/venv points.
COPY pneumonia_zoo/ pneumonia_zoo/
COPY fastapiapp.py ./
COPY docker/serve.sh docker/serve.sh
COPY models/ models/
COPY templates/ templates/
COPY static/ static/
COPY sample_images/ sample_images/

# Everything is configurable at `docker run -e` / in the orchestrator:
#   MLFLOW_TRACKING_URI                   the tracking server holding the registry (http://host:5000)
#   PNEUMONIA_ZOO_REGISTERED_MODEL_NAME   registered model to serve (default pneumonia-classifier)
#   PNEUMONIA_ZOO_CHAMPION_ALIAS          alias to serve and follow (default champion)
#   PNEUMONIA_ZOO_RELOAD_INTERVAL_S       how often the alias is re-checked (default 30; 0 = never)
#   PNEUMONIA_ZOO_*                       every other setting in pneumonia_zoo/config.py (upload and batch
#                                         limits, runtime, admin token)
# The default store is a SQLite file in /tmp (the app directory is read-only): an empty registry, so
# /healthz answers and /readyz explains that no champion exists until MLFLOW_TRACKING_URI names a server.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    MLFLOW_TRACKING_URI=sqlite:////tmp/mlflow.db \
    FORWARDED_ALLOW_IPS=*

USER 10001:10001
EXPOSE 8000

# python, not curl: the slim image has no curl. /healthz answers as soon as the process serves.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# docker/serve.sh registers the starter model when the registry has no champion (REGISTER_STARTER=0: off),
# then execs one uvicorn process serving fastapiapp:app on 0.0.0.0:8000 (HOST, PORT).
CMD ["/app/docker/serve.sh"]
