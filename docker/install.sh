#!/usr/bin/env bash
# Installs Pneumonia Zoo into a virtual environment. This is the one recipe: the Dockerfile RUNs it,
# `make setup` runs it, and tests/deploy/test_install_replay.py replays the Dockerfile's calls of it in
# a fresh venv, so the image, the developer's venv and the test cannot drift apart.
#
# usage: docker/install.sh VENV_DIR SOURCE_DIR [STEP ...]     (steps run in order; default: all)
#   deps     the lock file (LOCK, default SOURCE_DIR/requirements.lock: every package pinned, with
#            the hashes of the files the index serves) with --require-hashes --no-deps, so a transitive
#            upgrade can never slip in. requirements.lock has no PyTorch (the default image);
#            requirements-full.lock and requirements-setup.lock have it. For a lock with torch and
#            TORCH_INDEX_URL set, torch and torchvision (the lock's versions) come from that index
#            first, without hashes (a different build, e.g. +cpu), and the lock's CUDA-only packages
#            (nvidia-*, cuda-*, triton) are left out. Packages installed already are kept.
#   project  the pneumonia_zoo package itself from SOURCE_DIR, NOT editable (templates, static files,
#            sample images and the starter model are package data), without dependencies; `pip check`.
#            EDITABLE=1: editable instead (a developer's checkout).
#   slim     removes what the service never runs: test suites inside installed packages, C/C++ headers
#            and Cython sources, ONNX Runtime's conversion tools, the MLflow UI's web assets, pip's
#            cache, triton (torch.compile's GPU compiler; `import torch` does not load it).
#            Only for an image: `pip check` no longer passes afterwards (triton is a declared dependency).
#   all      deps then project (the default)
#
# TORCH_INDEX_URL   where torch and torchvision come from; unset or empty: the lock (PyPI's build, with
#                   hashes). The Dockerfile's full image sets PyTorch's CPU wheel index: no CUDA.
#                   Ignored for a lock without torch.
# LOCK              the lock file to install (default SOURCE_DIR/requirements.lock)
# PYTHON            the interpreter that creates VENV_DIR when it does not exist (default: python3)
set -euo pipefail

usage="usage: $0 VENV_DIR SOURCE_DIR [deps|project|slim|all ...]"
venv=${1:?$usage}
source_dir=${2:?$usage}
shift 2
steps=("${@:-all}")
torch_index=${TORCH_INDEX_URL:-}
lock=${LOCK:-$source_dir/requirements.lock}
# CUDA-only packages that PyPI's torch pulls in on Linux; a torch from another index brings its own.
cuda_only='^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)=='

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
python="$venv/bin/python"
pip_install=("$python" -m pip install --disable-pip-version-check --no-input)

# The version the lock pins for one package, e.g. "2.14.1".
locked() {
    local version
    version=$(sed -nE "s/^$1==([^ ;\\\\]+).*/\\1/p" "$lock" | head -n1)
    if [ -z "$version" ]; then
        echo "install.sh: no '$1==' pin in $lock" >&2
        exit 1
    fi
    echo "$version"
}

# The lock without the entries (first line plus its indented --hash and comment lines) of CUDA packages.
without_cuda() {
    awk -v pattern="$cuda_only" '
        /^[^ #]/ { skip = ($0 ~ pattern) }
        !skip { print }
    ' "$lock"
}

install_deps() {
    [ -s "$lock" ] || { echo "install.sh: $lock is missing (make lock)" >&2; exit 1; }
    if [ -z "$torch_index" ] || ! grep -q '^torch==' "$lock"; then
        "${pip_install[@]}" --require-hashes --no-deps -r "$lock"
        return
    fi
    "${pip_install[@]}" --no-deps --index-url "$torch_index" \
        "torch==$(locked torch)" "torchvision==$(locked torchvision)"
    if [[ $torch_index == */cpu ]]; then
        # A CUDA build would add gigabytes of libraries that a CPU container never uses.
        "$python" -c 'import sys, torch; sys.exit(f"CUDA build of torch: {torch.__version__}" if torch.version.cuda else 0)'
    fi
    local filtered
    filtered=$(mktemp "${TMPDIR:-/tmp}/lock.XXXXXX.txt")
    without_cuda >"$filtered"
    "${pip_install[@]}" --require-hashes --no-deps -r "$filtered"
    rm -f "$filtered"
}

install_project() {
    # No build isolation: setuptools comes from the lock (torch needs it), not from the network.
    if [ "${EDITABLE:-0}" = 1 ]; then
        "${pip_install[@]}" --no-deps --no-build-isolation --editable "$source_dir"
    else
        "${pip_install[@]}" --no-deps --no-build-isolation "$source_dir"
    fi
    "$python" -m pip check
}

slim() {
    local site
    site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    find "$site" -type d -name tests -prune -exec rm -rf {} +
    # C/C++ headers and Cython sources (nothing compiles against them at run time); ONNX Runtime's model
    # conversion tools (not its runtime); the MLflow UI's web assets (the image serves no MLflow UI: the
    # compose stack runs its own tracking server image).
    find "$site" -type d -name include -path "*/site-packages/*/include" -not -path "*.dist-info/*" -prune \
        -exec rm -rf {} +
    find "$site" -type f \( -name "*.pyx" -o -name "*.pxd" -o -name "*.pxi" \) -delete
    rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools" \
        "$site/mlflow/server/js"
    rm -rf "$site/triton" "$site"/triton-*.dist-info "${HOME:-/root}/.cache/pip"
    # The venv's own byte code is compiled once here: the image's root filesystem may be read-only.
    "$python" -m compileall -q -j 0 "$site" >/dev/null || true
}

for step in "${steps[@]}"; do
    case $step in
        deps | project | slim | all) ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
for step in "${steps[@]}"; do
    case $step in
        deps) install_deps ;;
        project) install_project ;;
        slim) slim ;;
        all) install_deps; install_project ;;
    esac
done
