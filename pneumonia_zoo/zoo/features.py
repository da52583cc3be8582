"""A zoo network split at its head: one forward pass gives the logits, the guard's features and the CAM
layer's activations. The same module is exported to ONNX, so both runtimes give all three."""

from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from pneumonia_zoo.zoo.architectures import Architecture

FeatureOutputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def channel_statistics(activations: torch.Tensor) -> torch.Tensor:
    """Per channel mean and standard deviation: N x C x H x W (or N x tokens x C) -> N x 2C."""
    axes = (2, 3) if activations.dim() == 4 else (1,)
    return torch.cat([activations.mean(axes), activations.std(axes)], dim=1)


class FeatureNetwork(nn.Module):
    """`forward(x) -> (logits, features, cam)`; the head's weights are the network's own, not a copy.

    features = [penultimate features | channel statistics of the architecture's guard layer]; cam = the
    activations of its Grad-CAM layer. Forward hooks capture the two intermediate outputs (torch.export
    traces them, so the ONNX graph has the same three outputs).
    """

    def __init__(self, network: nn.Module, arch: Architecture) -> None:
        super().__init__()
        parent_path, _, child = arch.head.rpartition(".")
        parent = network.get_submodule(parent_path) if parent_path else network
        self.head: nn.Linear = cast(nn.Linear, parent.get_submodule(child))
        parent.register_module(child, nn.Identity())  # the body now ends at the head's input
        self.body = network
        self.architecture = arch
        self._captured: dict[str, torch.Tensor] = {}
        for key, path in (("guard", arch.guard_layer), ("cam", arch.cam_layer)):
            self.body.get_submodule(path).register_forward_hook(self._keeper(key))

    def _keeper(self, key: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._captured[key] = output

        return keep

    def forward(self, x: torch.Tensor) -> FeatureOutputs:
        penultimate = self.body(x).flatten(1)
        logits = self.head(penultimate)
        guard = channel_statistics(self._captured["guard"])
        return logits, torch.cat([penultimate, guard], dim=1), self._captured["cam"]

    def part_dims(self, image_size: int) -> list[int]:
        """Widths of the feature parts (penultimate, guard layer statistics) at this input size."""
        with torch.no_grad():
            penultimate = self.body(torch.zeros(1, 3, image_size, image_size)).flatten(1).shape[1]
            features = channel_statistics(self._captured["guard"]).shape[1]
        return [penultimate, features]


class LogitsOnly(nn.Module):
    """What Grad-CAM needs: a module whose output is the logits."""

    def __init__(self, network: FeatureNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0]
