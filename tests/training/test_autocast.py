"""Mixed precision: what --autocast means on each device, and a bfloat16 training step on CPU (the same
code path CUDA takes; tests/gpu/ runs it on a GPU)."""

import typing
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.device import AUTOCAST_MODES, Runtime, autocast_dtype, setup_runtime
from pneumonia_zoo.training.loop import fit
from pneumonia_zoo.training.schedules import ScheduleParams, Scheduler

CPU = torch.device("cpu")


def test_the_option_offers_exactly_the_modes_the_runtime_knows() -> None:
    assert typing.get_args(TrainConfig.model_fields["autocast"].annotation) == AUTOCAST_MODES


@pytest.mark.parametrize(("mode", "dtype"), [("auto", None), ("off", None), ("bf16", torch.bfloat16)])
def test_on_cpu_auto_is_float32_and_bf16_is_allowed(mode: str, dtype: torch.dtype | None) -> None:
    assert autocast_dtype(mode, CPU) is dtype


def test_fp16_on_cpu_and_unknown_modes_are_refused() -> None:
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        autocast_dtype("fp16", CPU)
    with pytest.raises(UserError, match="unknown --autocast 'fp8'"):
        autocast_dtype("fp8", CPU)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_asking_for_cuda_without_it_is_one_clear_error() -> None:
    with pytest.raises(UserError, match="no CUDA device is available"):
        setup_runtime("cuda")


def test_only_float16_scales_the_loss() -> None:
    assert not Runtime(CPU, precision=torch.bfloat16).loss_scaling
    assert not Runtime(CPU).grad_scaler().is_enabled()
    assert Runtime(torch.device("cuda"), precision=torch.float16).loss_scaling  # made, never run, here


def test_the_option_is_a_logged_param_and_part_of_the_reproducing_command() -> None:
    config = TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), autocast="bf16")
    assert config.flat()["autocast"] == "bf16"
    assert "--autocast bf16" in config.train_command()
    assert "--autocast" not in TrainConfig.build(arch="small_cnn", data=Path("chest_xray")).train_command()
    with pytest.raises(UserError, match="invalid --autocast"):
        TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), autocast="int8")


def test_a_bf16_training_step_on_cpu_runs_in_bf16_and_keeps_float32_weights() -> None:
    torch.manual_seed(0)
    images, labels = torch.randn(32, 3, 16, 16), torch.arange(32) % 2
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    seen: list[torch.dtype] = []
    model[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    runtime = Runtime(CPU, precision=torch.bfloat16)
    scheduler = Scheduler("constant", optimizer, ScheduleParams(epochs=1), len(loader))
    result = fit(
        model, loader, loader, optimizer, scheduler, nn.CrossEntropyLoss(), runtime,
        epochs=1, patience=1, channels_last=True, quiet=True,
    )  # fmt: skip
    assert seen and set(seen) == {torch.bfloat16}  # training and validation forwards alike
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert runtime.tags() | {"device_name": "-"} == {
        "device": "cpu", "device_name": "-", "autocast": "bf16", "world_size": "1"
    }  # fmt: skip
