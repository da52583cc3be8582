"""How a package may be run, declared once and importing nothing heavy (the CLI offers these at
once): the runtime that executes its network, and the test-time views it may average."""

from typing import Literal, get_args

# auto: ONNX Runtime when the package has its ONNX export, else PyTorch.
Runtime = Literal["auto", "onnx", "torch"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
# A package's `tta`: the views of each image whose probabilities are averaged (classifier.py makes them).
TTA_VIEWS = ("identity", "zoom_in")
