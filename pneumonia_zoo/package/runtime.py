"""Running one network on a preprocessed float32 N x 3 x S x S batch: ONNX Runtime or PyTorch.

Both return (logits N x 2, the guard's features N x D or None); the classifier does the rest, so the two
runtimes cannot differ in anything but float32 rounding. `activations` gives the CAM layer's output for
an explanation. ONNX Runtime never imports torch.
"""

import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pneumonia_zoo.package.format import PREDICTION_KEYS
from pneumonia_zoo.resources import available_cpus

if TYPE_CHECKING:  # torch is imported only when a PyTorch runner is made
    import onnxruntime
    import torch

    from pneumonia_zoo.zoo.features import FeatureNetwork

Outputs = tuple[np.ndarray, np.ndarray | None]


def torch_available() -> bool:
    """Whether PyTorch can be imported here, found without importing it (the default image has none)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except ValueError:  # imported already, by a loader that left no spec
        return True


class Runner(Protocol):
    runtime: str

    def __call__(self, batch: np.ndarray) -> Outputs: ...

    def activations(self, batch: np.ndarray) -> np.ndarray: ...

    def release_memory(self) -> None: ...


_shared_arena_lock = threading.Lock()
_shared_arena_registered = False


def use_shared_cpu_arena(options: "onnxruntime.SessionOptions") -> None:
    """Make a session allocate from one CPU arena shared by every ONNX session of the process.

    Each session's own arena keeps the largest working set its batches ever needed, so an ensemble held
    the sum of its members' (members run one after another); one arena holds about the largest. Measured
    with the Lite1 + Lite2 starter, batches of 16: 0.50 GB resident after a burst against 0.33 GB, the
    batch time unchanged (BENCHMARKS.md, 2026-12-07).
    """
    import onnxruntime

    global _shared_arena_registered
    with _shared_arena_lock:
        if not _shared_arena_registered:
            cpu = onnxruntime.OrtMemoryInfo(
                "Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, onnxruntime.OrtMemType.DEFAULT
            )
            onnxruntime.create_and_register_allocator(cpu, None)
            _shared_arena_registered = True
    options.add_session_config_entry("session.use_env_allocators", "1")


class OnnxRunner:
    runtime = "onnx"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or available_cpus()
        options.inter_op_num_threads = 1
        # Idle intra-op threads spin-wait by default: between batches they would burn the cores the
        # decoding threads need. Waking them costs far less than a batch takes.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        use_shared_cpu_arena(options)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.outputs_available = [output.name for output in self.session.get_outputs()]
        wanted = [name for name in PREDICTION_KEYS if name in self.outputs_available]
        self.outputs = wanted or self.outputs_available[:1]  # a format 1 export has only the logits
        # The CPU arena keeps every chunk a batch ever needed (hundreds of MB after a burst of batches of
        # 16) and is fast because it does: without it, or shrinking after every run, a batch of 8 took
        # about 1.5x as long on a busy 2-core machine (fresh pages every run). So it stays, and the
        # service shrinks it once it idles (release_memory).
        self._shrink = onnxruntime.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        shape = self.session.get_inputs()[0].shape  # [batch, 3, S, S]: the batch axis is symbolic
        self._smallest = np.zeros([1, *(d if isinstance(d, int) else 1 for d in shape[1:])], np.float32)

    def __call__(self, batch: np.ndarray) -> Outputs:
        results = self.session.run(self.outputs, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return results[0], (results[1] if len(results) > 1 else None)

    def activations(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["cam"], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]

    def release_memory(self) -> None:
        """Give the arena's unused chunks back to the allocator: one single-image run with arena
        shrinkage (ONNX Runtime frees what that run does not use at its end). Never during another run."""
        self.session.run(self.outputs[:1], {self.input_name: self._smallest}, self._shrink)


class TorchRunner:
    runtime = "torch"

    def __init__(self, network: "FeatureNetwork", device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)  # "cuda" when training evaluates its package on the GPU
        self.network = network.eval().to(self.device).to(memory_format=torch.channels_last)

    def _inputs(self, batch: np.ndarray) -> "torch.Tensor":
        return self.torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)

    def __call__(self, batch: np.ndarray) -> Outputs:
        torch = self.torch
        with torch.inference_mode():
            inputs = self._inputs(batch).contiguous(memory_format=torch.channels_last)
            logits, features, _ = self.network(inputs)
            return logits.float().cpu().numpy(), features.float().cpu().numpy()

    def activations(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.network(self._inputs(batch))[2].float().cpu().numpy()

    def release_memory(self) -> None:
        """Nothing to do: PyTorch's CPU allocator caches nothing (its freed tensors go back to malloc)."""
