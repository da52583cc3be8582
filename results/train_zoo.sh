#!/usr/bin/env bash
# The exact commands behind the README's Results table (CPU, 2 threads, the full Kermany set), run from
# the repository root after `make setup`; results/store/ holds what they produced.
#
#   MLFLOW_TRACKING_URI=sqlite:///$PWD/store.db bash results/train_zoo.sh ../shared/data/chest_xray
#
# Versions 1 and 2: EfficientNet-Lite0 and -Lite1 (ImageNet weights, offline), the robust recipe;
# version 3: their ensemble, chosen and calibrated on validation. Then the champion by validation AUC.
set -euo pipefail
DATA=${1:?usage: train_zoo.sh CHEST_XRAY_DIR}
PZ=${PZ:-.venv/bin/pneumonia-zoo}
RECIPE=(--data "$DATA" --epochs 5 --patience 2 --batch-size 32 --lr 5e-4 --schedule cosine --warmup-epochs 0.3
    --class-weights --label-smoothing 0.05 --threads 2 --quiet)

"$PZ" train --arch efficientnet_lite0 "${RECIPE[@]}"
"$PZ" train --arch efficientnet_lite1 "${RECIPE[@]}"
"$PZ" ensemble --member models:/pneumonia-classifier/1 --member models:/pneumonia-classifier/2 --data "$DATA"
"$PZ" promote
"$PZ" compare --out results/compare
