"""ONNX export of a FeatureNetwork, checked against PyTorch, optionally with float16 storage.

With float16 storage every float initializer that float16 holds exactly (the float16-rounded weights;
not the constants the exporter derives from them) is kept as float16 in the file and cast back to
float32 by a Cast node: the arithmetic is the float32 network's, on the same (float16-rounded) weights the
safetensors hold, so ONNX Runtime and PyTorch agree to float32 rounding. Networks with batch norm keep
most of their size: the exporter folds it into the convolutions, and those constants stay float32.
"""

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from pneumonia_zoo.package.format import OUTPUT_NAMES, PackageError
from pneumonia_zoo.zoo.features import FeatureNetwork

TOLERANCE = 1e-4  # on logits, and so on probabilities
_MIN_CAST_ELEMENTS = 16  # tiny tensors (scalars, shapes) stay float32: no gain, more nodes


def _float16_storage(model: onnx.ModelProto) -> None:
    graph = model.graph
    casts = []
    for initializer in graph.initializer:
        if initializer.data_type != TensorProto.FLOAT:
            continue
        array = numpy_helper.to_array(initializer)
        if array.size < _MIN_CAST_ELEMENTS:
            continue
        half = array.astype(np.float16)
        # Only tensors that float16 holds exactly (the stored weights): constants the exporter derived
        # from them (folded normalisations, reciprocals) would be rounded a second time.
        if not np.array_equal(half.astype(np.float32), array):
            continue
        name = initializer.name
        initializer.CopyFrom(numpy_helper.from_array(half, f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def export_onnx(network: FeatureNetwork, image_size: int, path: Path, float16_storage: bool = False) -> float:
    """Export with a dynamic batch axis; returns the largest logit difference from PyTorch (checked)."""
    import onnxruntime

    network = network.eval().to(memory_format=torch.contiguous_format)
    example = torch.randn(2, 3, image_size, image_size)
    with warnings.catch_warnings():
        # The forward hooks keep the guard and CAM layers' outputs in `_captured` for the same pass to
        # return: torch.export traces them into the graph's outputs, which the check below compares with
        # PyTorch's, so its advice to make them buffers does not apply; every `train` printed it.
        warnings.filterwarnings(
            "ignore", message=r"The tensor attributes self\._captured", category=UserWarning
        )
        program = torch.onnx.export(
            network,
            (example,),
            input_names=["x"],
            output_names=list(OUTPUT_NAMES),
            dynamo=True,
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise PackageError("the ONNX exporter returned no program")
    model = program.model_proto
    if float16_storage:
        _float16_storage(model)
    onnx.save(model, str(path))
    check = torch.randn(3, 3, image_size, image_size)
    with torch.no_grad():
        expected = [output.numpy() for output in network(check)]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(list(OUTPUT_NAMES), {"x": check.numpy()})
    # Logits to the README's 1e-4; the guard's features and the CAM relative to their own scale.
    error = float(np.abs(actual[0] - expected[0]).max())
    for got, want in zip(actual[1:], expected[1:], strict=True):
        error = max(error, float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max()))))
    if error > TOLERANCE:
        path.unlink()
        raise PackageError(f"ONNX export differs from PyTorch by {error:.2e} (> {TOLERANCE})")
    return error
