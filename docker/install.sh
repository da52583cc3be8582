#!/usr/bin/env bash
# Installs Pneumonia Zoo into a virtual environment. This is the one recipe: the Dockerfile RUNs it
# and tests/deploy/test_install_replay.py replays the Dockerfile's calls of it in a fresh venv, so
# the image and the test cannot drift apart.
#
# usage: docker/install.sh VENV_DIR SOURCE_DIR [deps|project|all]
#   deps     torch and torchvision from TORCH_INDEX_URL (pins read from requirements.txt), then
#            the rest of requirements.txt (pip sees torch already satisfied: 2.14.1+cpu matches ==2.14.1)
#   project  the pneumonia_zoo package itself, without dependencies, editable, then `pip check`.
#            Editable because the service finds templates/, static/, sample_images/ and models/ beside
#            the package (pneumonia_zoo.config.PROJECT_ROOT): SOURCE_DIR is the app directory.
#   all      both (the default)
#
# TORCH_INDEX_URL   where torch and torchvision come from; unset: PyTorch's CPU wheel index, so the
#                   image has no CUDA libraries. Set it empty to use pip's configured index instead.
# PYTHON            the interpreter that creates VENV_DIR when it does not exist (default: python3)
set -euo pipefail

usage="usage: $0 VENV_DIR SOURCE_DIR [deps|project|all]"
venv=${1:?$usage}
source_dir=${2:?$usage}
step=${3:-all}
torch_index=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
requirements="$source_dir/requirements.txt"

# The exact pin of one package in requirements.txt, e.g. "torch==2.14.1".
pin() {
    local line
    if ! line=$(grep -E "^$1==" "$requirements"); then
        echo "install.sh: no '$1==' pin in $requirements" >&2
        exit 1
    fi
    line=${line%%#*}
    echo "${line//[[:space:]]/}"
}

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
python="$venv/bin/python"
pip_install=("$python" -m pip install --disable-pip-version-check)

install_deps() {
    local index=()
    if [ -n "$torch_index" ]; then
        index=(--index-url "$torch_index")
    fi
    "${pip_install[@]}" "${index[@]}" "$(pin torch)" "$(pin torchvision)"
    if [[ $torch_index == */cpu ]]; then
        # A CUDA build would add gigabytes of libraries that a CPU container never uses.
        "$python" -c 'import sys, torch; sys.exit(f"CUDA build of torch: {torch.__version__}" if torch.version.cuda else 0)'
    fi
    "${pip_install[@]}" -r "$requirements"
}

install_project() {
    "${pip_install[@]}" --no-deps --editable "$source_dir"
    "$python" -m pip check
}

case $step in
    deps) install_deps ;;
    project) install_project ;;
    all) install_deps; install_project ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
