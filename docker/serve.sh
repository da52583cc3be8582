#!/usr/bin/env bash
# The image's command: like `make serve`, register the package's starter model when the registry has no
# champion (never moving an existing one), then replace this shell with the server, one process.
#
#   REGISTER_STARTER         1 (default): as above; 0: serve only what the registry holds (production)
#   HOST, PORT               where the server listens (default 0.0.0.0:8000, the port the image EXPOSEs)
#   PNEUMONIA_ZOO_*          every service setting (README, Configuration), e.g. _GRACEFUL_SHUTDOWN_S
set -euo pipefail

if [ "${REGISTER_STARTER:-1}" = 1 ]; then
    # In the background, so that a SIGTERM (docker stop) during registration ends it at once: this shell
    # is PID 1, and PID 1 gets no default signal handling.
    pneumonia-zoo register-starter &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM INT
    # A registry that cannot be reached must not stop the service: /readyz then says what is wrong.
    wait "$child" || echo "serve.sh: the starter model was not registered" >&2
    trap - TERM INT
fi

# One process: scale with replicas, not workers (each worker would hold its own copy of the model).
# pneumonia-zoo serve: uvicorn with the service's limits (header timeout, concurrency limit, keep-alive,
# graceful shutdown inside docker stop's 10 s: PNEUMONIA_ZOO_GRACEFUL_SHUTDOWN_S, default 8).
exec pneumonia-zoo serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}"
