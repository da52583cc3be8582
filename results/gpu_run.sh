#!/usr/bin/env bash
# On a lent GPU machine (DEVELOPERS.md, "When a GPU is lent"), with results/gpu_bundle.py's parts carried
# there one call each:
#
#   bash results/gpu_run.sh stage                       keep the part this call carried (in /tmp, which
#                                                       lasts while the machine stays warm)
#   bash results/gpu_run.sh smoke                       the smoke test alone (a --smoke-only bundle: one
#                                                       part, so one call)
#   BUDGET_S=540 bash results/gpu_run.sh [options]      the last call: check and unpack the bundle, install
#                                                       its wheels beside the machine's own PyTorch, show
#                                                       the GPU, run the CUDA smoke test (tests/gpu) and the
#                                                       GPU recipe (results/gpu_recipe.py, given [options]),
#                                                       and leave the packed store and the logs in $OUT
#
# BUDGET_S: seconds the whole last command may take (default 560: the tool stops a command at 600, and the
# session's device time may end sooner). The recipe gets what is left after unpacking and the smoke test,
# less a minute for packing and copying.
set -uo pipefail
OUT=${OUT:?run this through the device tool, which sets OUT}
BUDGET_S=${BUDGET_S:-560}
PYTHON=${PYTHON:-python3}
PARTS=${PARTS:-/tmp/pneumonia-zoo-parts}
WORK=${WORK:-/tmp/pneumonia-zoo-gpu}
export PYTHONUNBUFFERED=1

mkdir -p "$PARTS" && cp -r .gpu/p* "$PARTS/" 2>/dev/null
if [ "${1:-}" = stage ]; then
    ls "$PARTS"
    exit 0
fi
expected=$(cat "$PARTS"/p01/bundle.sha256 2>/dev/null)
if [ -z "$expected" ] || [ "$(cat "$PARTS"/p*/bundle.tar.part | sha256sum | cut -d' ' -f1)" != "$expected" ]; then
    echo "the bundle is incomplete or damaged: each part's call must reach this machine while it is warm"
    ls -l "$PARTS"/*/ 2>&1
    exit 3
fi
rm -rf "$WORK" && mkdir -p "$WORK"
cat "$PARTS"/p*/bundle.tar.part | tar -xz -C "$WORK" || exit 3
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
    "$WORK"/wheels/*.whl || exit 4
export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    nvidia-smi -L 2>&1
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA available:', torch.cuda.is_available())"
} | tee "$OUT/machine.log"
"$PYTHON" -m pytest tests/gpu -v -p no:cacheprovider 2>&1 | tee "$OUT/smoke.log"
smoke=${PIPESTATUS[0]}
if [ "${1:-}" = smoke ]; then
    exit "$smoke"
fi

minutes=$("$PYTHON" -c "print(round(max(1.0, ($BUDGET_S - $SECONDS - 60) / 60), 2))")
"$PYTHON" results/gpu_recipe.py --data "$WORK/chest_xray" --out "$WORK/run" --total-minutes "$minutes" "$@" \
    2>&1 | tee "$OUT/recipe.log"
recipe=${PIPESTATUS[0]}
cp "$WORK/run/gpu-store.tar.gz" "$OUT/" 2>/dev/null || echo "no packed store was made"
cp "$WORK"/run/starter.tar.gz.part* "$OUT/" 2>/dev/null  # with --starter: the champion, exported
echo "smoke test exit $smoke, recipe exit $recipe, $SECONDS s in all"
exit $((smoke != 0 || recipe != 0))
