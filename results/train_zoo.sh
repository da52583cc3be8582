#!/usr/bin/env bash
# The exact commands behind the README's results table (CPU, 2 threads, full data set).
# Usage: MLFLOW_TRACKING_URI=sqlite:///path/mlflow.db bash results/train_zoo.sh ../shared/data/chest_xray
# The starter (efficientnet_lite0) command is in models/starter/MODEL_CARD.md.
set -euo pipefail
DATA=${1:?usage: train_zoo.sh CHEST_XRAY_DIR}
COMMON=(--data "$DATA" --threads 2 --class-weights --warmup-epochs 0.2 --quiet)

pneumonia-zoo train --arch small_cnn --image-size 128 --epochs 6 --max-minutes 8 --lr 1e-3 --batch-size 32 "${COMMON[@]}"
pneumonia-zoo train --arch alexnet --no-pretrained --image-size 128 --epochs 4 --max-minutes 6 --lr 1e-4 "${COMMON[@]}"
pneumonia-zoo train --arch resnet50 --no-pretrained --image-size 128 --epochs 2 --max-minutes 8 --lr 1e-3 "${COMMON[@]}"
pneumonia-zoo train --arch densenet201 --no-pretrained --image-size 128 --epochs 2 --max-minutes 8 --lr 1e-3 "${COMMON[@]}"
pneumonia-zoo train --arch vgg16 --no-pretrained --image-size 96 --epochs 1 --max-minutes 8 --lr 1e-4 "${COMMON[@]}"
# The six-schedule sweep on a 1,500-image stratified subsample of train (the test split stays whole).
pneumonia-zoo sweep --arch small_cnn --data "$DATA" --image-size 128 --epochs 3 --batch-size 32 --lrs 1e-3 \
  --limit 1500 --schedules step,staircase,exponential,natural_exp,polynomial,cosine --threads 2 --quiet
