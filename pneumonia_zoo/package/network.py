"""Building a package's network from the installed zoo and its stored weights (torch is imported here)."""

import torch

from pneumonia_zoo.zoo.architectures import get_architecture
from pneumonia_zoo.zoo.factory import create_model
from pneumonia_zoo.zoo.features import FeatureNetwork


def feature_network(architecture: str, state: dict[str, torch.Tensor] | None = None) -> FeatureNetwork:
    """Build the zoo's network (no download), load `state` (keys of the plain network), split it."""
    network = create_model(architecture, pretrained=False)
    if state is not None:
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return FeatureNetwork(network.eval(), get_architecture(architecture))
