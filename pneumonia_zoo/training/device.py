"""Device, threads, seeds, mixed precision and distributed (torchrun) set-up."""

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from pneumonia_zoo.errors import UserError

AUTOCAST_MODES = ("auto", "bf16", "fp16", "off")
_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    # The autocast dtype of forward passes (None: plain float32). Parameters and the optimizer stay float32.
    precision: torch.dtype | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def amp(self) -> bool:
        return self.precision is not None

    @property
    def loss_scaling(self) -> bool:
        """float16's narrow range underflows small gradients: scale the loss. bfloat16 needs no scaling."""
        return self.precision == torch.float16

    @property
    def precision_name(self) -> str:
        return "off" if self.precision is None else _DTYPE_NAMES[self.precision]

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.precision, enabled=self.amp)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.loss_scaling)

    def tags(self) -> dict[str, str]:
        """Where a run trained, for its tags and its registered version's."""
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        else:
            name = platform.processor() or platform.machine() or "cpu"
        return {
            "device": self.device.type,
            "device_name": name,
            "autocast": self.precision_name,
            "world_size": str(self.world_size),
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `mode` means on `device`.

    auto: bfloat16 on a CUDA GPU that has it (Ampere and later), float16 with loss scaling on older ones,
    and off on CPU (CPU autocast is slower than float32 on most processors, which lack bfloat16 units).
    bf16 is also allowed on CPU (it exercises the mixed-precision path without a GPU); fp16 is CUDA-only.
    """
    if mode not in AUTOCAST_MODES:
        raise UserError(f"unknown --autocast '{mode}': choose one of {', '.join(AUTOCAST_MODES)}")
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if mode == "fp16" and device.type != "cuda":
        raise UserError("--autocast fp16 needs a CUDA device: on CPU use bf16 or off")
    return torch.bfloat16 if mode == "bf16" else torch.float16


def setup_runtime(device: str = "auto", threads: int | None = None, autocast: str = "auto") -> Runtime:
    """Pick the device and precision; join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    precision = autocast_dtype(autocast, torch_device)  # a refused mode fails before the process group
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(torch_device, rank, world_size, precision)


def teardown_runtime(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()
