"""Evaluating a registered model on a data split, with the split rebuilt as it was trained."""

from pathlib import Path

import numpy as np
import torch

from pneumonia_zoo.data.cache import decode_all
from pneumonia_zoo.data.discovery import discover
from pneumonia_zoo.data.pipeline import split_samples
from pneumonia_zoo.data.split import stratified_subsample
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking.registry import ResolvedVersion, load_version
from pneumonia_zoo.training.evaluate import SplitEvaluation, evaluate_probs

SPLITS = ("train", "val", "test")


@torch.no_grad()
def assess(
    model_uri: str,
    data: Path,
    split: str,
    bootstrap: int = 1000,
    batch_size: int = 32,
    limit: int | None = None,
) -> tuple[ResolvedVersion, SplitEvaluation, list[tuple[str, str]]]:
    """Metrics of a registry version on one split, at the threshold stored with the model."""
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
    resolved, package = load_version(model_uri)
    info = package.config.info
    seed, val_fraction = int(info.get("seed", 42)), float(info.get("val_fraction", 0.15))
    if split == "test":  # with the training seed, `--limit N` picks the subsample training used
        _, test = discover(Path(data))
        samples = stratified_subsample(test, limit, seed)
    else:  # rebuild the model's own train/val split: same seed, fraction and subsample
        trained_limit = int(info["limit"]) if info.get("limit") not in (None, "", "None") else None
        train, val, _ = split_samples(Path(data), val_fraction, seed, trained_limit)
        samples = stratified_subsample(train if split == "train" else val, limit, seed)
    if not samples:
        raise UserError(f"no '{split}' images in {data}")
    images = decode_all(samples, package.config.preprocessing, f"decode {split}")
    if len(images.labels) == 0:
        raise UserError(f"every {split} image in {data} is unreadable")
    probs, losses = [], []
    for start in range(0, len(images.labels), batch_size):
        batch = package.config.preprocessing.normalize(images.pixels[start : start + batch_size])
        logits = package.network(batch.contiguous(memory_format=torch.channels_last))
        targets = images.labels[start : start + batch_size]
        losses.append(torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item())
        probs.append(logits.softmax(1)[:, 1].numpy())
    evaluation = evaluate_probs(
        split,
        images.labels.numpy(),
        np.concatenate(probs),
        sum(losses) / len(images.labels),
        package.config.threshold,
        bootstrap,
    )
    return resolved, evaluation, images.unreadable
