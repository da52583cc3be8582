"""Running one network on a preprocessed float32 N x 3 x S x S batch: ONNX Runtime or PyTorch.

Both return (logits N x 2, the guard's features N x D or None); the classifier does the rest, so the two
runtimes cannot differ in anything but float32 rounding. `activations` gives the CAM layer's output for
an explanation. ONNX Runtime never imports torch.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pneumonia_zoo.package.format import PREDICTION_KEYS
from pneumonia_zoo.resources import available_cpus

if TYPE_CHECKING:  # torch is imported only when a PyTorch runner is made
    import torch

    from pneumonia_zoo.zoo.features import FeatureNetwork

Outputs = tuple[np.ndarray, np.ndarray | None]


class Runner(Protocol):
    runtime: str

    def __call__(self, batch: np.ndarray) -> Outputs: ...

    def activations(self, batch: np.ndarray) -> np.ndarray: ...


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
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.outputs_available = [output.name for output in self.session.get_outputs()]
        wanted = [name for name in PREDICTION_KEYS if name in self.outputs_available]
        self.outputs = wanted or self.outputs_available[:1]  # a format 1 export has only the logits

    def __call__(self, batch: np.ndarray) -> Outputs:
        results = self.session.run(self.outputs, {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return results[0], (results[1] if len(results) > 1 else None)

    def activations(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["cam"], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


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
