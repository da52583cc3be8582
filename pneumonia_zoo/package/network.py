"""The classifier split at its head, so one forward pass gives logits and the penultimate features
(the out-of-population guard scores the features). torch is imported only here and in io/onnx."""

import torch
from torch import nn

from pneumonia_zoo.zoo.architectures import get_architecture
from pneumonia_zoo.zoo.factory import create_model


class FeatureNetwork(nn.Module):
    """`forward(x) -> (logits, features)`; the head's weights are the network's own, not a copy."""

    def __init__(self, network: nn.Module, head_path: str) -> None:
        super().__init__()
        parent_path, _, child = head_path.rpartition(".")
        parent = network.get_submodule(parent_path) if parent_path else network
        self.head = parent.get_submodule(child)
        parent.register_module(child, nn.Identity())  # the body now ends at the head's input
        self.body = network

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


class LogitsOnly(nn.Module):
    """What Grad-CAM needs: a module whose output is the logits."""

    def __init__(self, network: FeatureNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0]


def feature_network(architecture: str, state: dict[str, torch.Tensor] | None = None) -> FeatureNetwork:
    """Build the zoo's network (no download), load `state` (keys of the plain network), split it."""
    network = create_model(architecture, pretrained=False)
    if state is not None:
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return FeatureNetwork(network.eval(), get_architecture(architecture).head)


def split_view(network: nn.Module, architecture: str) -> FeatureNetwork:
    """A trained plain network seen as a FeatureNetwork, sharing its parameters (for fitting the guard)."""
    import copy

    return FeatureNetwork(copy.deepcopy(network).eval(), get_architecture(architecture).head)
