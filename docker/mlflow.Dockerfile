# syntax=docker/dockerfile:1
# MLflow tracking server for the compose stack (and the production option on Azure): mlflow with the
# PostgreSQL driver and the Azure Blob client. compose.yaml supplies the backend store and the flags.
# PYTHON_IMAGE: as for the service image (docker/base-image.sh makes a local base without Docker Hub).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false

# A virtual environment: the same on the official image and on a Debian base without a system pip.
COPY mlflow-requirements.txt /tmp/mlflow-requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/mlflow-requirements.txt

# The artifacts volume is mounted at /mlartifacts; created here so a new named volume is owned by the user.
RUN groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid mlflow --create-home --home-dir /home/mlflow mlflow \
    && mkdir /mlartifacts \
    && chown mlflow:mlflow /mlartifacts

USER 10001:10001
WORKDIR /home/mlflow
EXPOSE 5000

HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]

# The backend store comes from MLFLOW_BACKEND_STORE_URI (kept off the command line: it holds a password).
CMD ["mlflow", "server", "--artifacts-destination", "/mlartifacts", "--host", "0.0.0.0", "--port", "5000", "--workers", "1"]
