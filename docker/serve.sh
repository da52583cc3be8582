#!/usr/bin/env bash
# The image's command: like `make serve`, register the shipped starter model when the registry has no
# champion (never moving an existing one), then replace this shell with one uvicorn process.
#
#   REGISTER_STARTER   1 (default): as above; 0: serve only what the registry holds (production)
#   HOST, PORT         where uvicorn listens (default 0.0.0.0:8000, the port the image EXPOSEs)
set -euo pipefail

if [ "${REGISTER_STARTER:-1}" = 1 ] && [ -f models/starter/model.json ]; then
    # A registry that cannot be reached must not stop the service: /readyz then says what is wrong.
    pneumonia-zoo register-starter || echo "serve.sh: the starter model was not registered" >&2
fi

# One process: scale with replicas, not workers (each worker would hold its own copy of the model).
exec uvicorn fastapiapp:app --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
    --proxy-headers --timeout-graceful-shutdown 20
