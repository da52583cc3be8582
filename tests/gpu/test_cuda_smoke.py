"""CUDA smoke test: training steps under autocast on the GPU, calibration there, the ONNX export of the
result, and one prediction through the package (ONNX Runtime, and PyTorch on the GPU).

Skipped where no CUDA device is (every CPU machine, CI): `make test` never needs one. On a GPU machine
(DEVELOPERS.md, "When a GPU is lent"): `pytest tests/gpu -v`.
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from pneumonia_zoo.data.cache import CachedDataset
from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.data.pipeline import PreparedData, prepare_data
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.package.build import write_single
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.package.format import PackageConfig
from pneumonia_zoo.package.io import guard_config
from pneumonia_zoo.training.calibrate import calibrate
from pneumonia_zoo.training.device import setup_runtime
from pneumonia_zoo.training.loop import train_one_epoch
from pneumonia_zoo.training.schedules import ScheduleParams, Scheduler
from pneumonia_zoo.zoo.architectures import get_architecture
from pneumonia_zoo.zoo.factory import create_model

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device here: this smoke test runs on a GPU machine (DEVELOPERS.md, 'When a GPU is lent')",
)

ARCH = "efficientnet_lite0"  # the champion's family; random weights (its ImageNet package is optional here)
SIZE = 64
EPOCHS = 30  # at most: fp16 stops at the first step its loss scaler takes


@pytest.fixture(scope="module")
def prepared(fixture_data: Path) -> tuple[Preprocessing, PreparedData]:
    arch = get_architecture(ARCH)
    preprocessing = Preprocessing(SIZE, arch.mean, arch.std, jpeg_quality=75)
    return preprocessing, prepare_data(fixture_data, preprocessing, 0.15, 42, None, quiet=True)


@pytest.mark.parametrize("mode", ["auto", "fp16"])
def test_autocast_training_step_export_and_one_prediction(
    mode: str, prepared: tuple[Preprocessing, PreparedData], originals: Path, tmp_path: Path
) -> None:
    preprocessing, data = prepared
    runtime = setup_runtime("cuda", autocast=mode)
    bf16 = mode == "auto" and torch.cuda.is_bf16_supported()
    expected = torch.bfloat16 if bf16 else torch.float16
    assert runtime.device.type == "cuda" and runtime.precision == expected
    assert runtime.grad_scaler().is_enabled() == (expected == torch.float16)  # loss scaling for fp16 only
    assert runtime.tags()["device_name"] == torch.cuda.get_device_name()

    torch.manual_seed(0)
    model = create_model(ARCH, pretrained=False).to(runtime.device, memory_format=torch.channels_last)
    activations: list[torch.dtype] = []
    model._conv_stem.register_forward_hook(lambda _m, _i, out: activations.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    loader = DataLoader(CachedDataset(data.train, preprocessing), batch_size=8, shuffle=True, drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = Scheduler("constant", optimizer, ScheduleParams(epochs=EPOCHS), len(loader))
    scaler = runtime.grad_scaler()
    # fp16: the loss scaler skips every step whose gradients overflow (halving its scale), as the first
    # steps of a random network at the initial scale of 2**16 do; seen on an H100. So train until a step
    # is taken, and check that the skipping is what held it back.
    for _ in range(EPOCHS):
        metrics = train_one_epoch(
            model, loader, optimizer, scheduler, nn.CrossEntropyLoss(), runtime, True, "smoke", scaler,
            quiet=True,
        )  # fmt: skip
        if any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)):
            break
    assert activations and set(activations) == {expected}  # the forward ran under autocast
    assert math.isfinite(metrics["train_loss"])
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    if expected == torch.float16:
        assert 0 < scaler.get_scale() <= 2.0**16

    arch = get_architecture(ARCH)
    calibration = calibrate(model, arch, data, preprocessing, runtime, 8, 0.05)  # GPU forwards, autocast
    assert math.isfinite(calibration.temperature)
    config = PackageConfig(
        architecture=ARCH,
        preprocessing=preprocessing,
        temperature=calibration.temperature,
        operating_points=calibration.operating_points,
        guard=guard_config(calibration.guard, 0.05),
    )
    model = model.to(memory_format=torch.contiguous_format).cpu()
    write_single(model, config, tmp_path / "package", calibration.guard, with_onnx=True)  # checked vs torch

    image = read_image(next(originals.iterdir()))  # a full-resolution original, as a user uploads it
    onnx = load_classifier(tmp_path / "package")
    assert onnx.runtime == "onnx"
    scores = onnx.predict([image])
    assert scores.probabilities.shape == (1, 2) and np.isclose(scores.probabilities.sum(), 1, atol=1e-5)
    on_gpu = load_classifier(tmp_path / "package", runtime="torch", device="cuda")
    assert on_gpu.members[0].runner.device.type == "cuda"
    # TF32 convolutions on the GPU round differently from ONNX Runtime's float32 on CPU.
    assert np.allclose(on_gpu.predict([image]).probabilities, scores.probabilities, atol=5e-3)
