"""`create_model`: a name from the zoo's registry -> a network with a 2-class head."""

from importlib import import_module

from torch import nn

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.zoo.architectures import (
    FREEZE_MODE,
    NUM_CLASSES,
    Architecture,
    get_architecture,
    resolve_pretrained,
)


def build_network(arch: Architecture, pretrained: bool) -> nn.Module:
    module, _, function = arch.builder.partition(":")
    return getattr(import_module(module), function)(pretrained)


def _replace_head(model: nn.Module, dotted: str) -> None:
    parent_path, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = parent.get_submodule(child)
    if not isinstance(old, nn.Linear):
        raise TypeError(f"head {dotted} is {type(old).__name__}, expected Linear")
    parent.register_module(child, nn.Linear(old.in_features, NUM_CLASSES))  # also for "6" in a Sequential


def freeze_backbone(network: nn.Module, head: str, frozen: bool) -> None:
    """Every parameter outside the `head` submodule stops (or resumes) receiving gradients: `--freeze
    backbone` for a whole run, `--probe-epochs` for its first epochs. An optimizer skips a parameter
    without a gradient, weight decay included, and backward never enters the backbone."""
    head_parameters = {id(parameter) for parameter in network.get_submodule(head).parameters()}
    for parameter in network.parameters():
        if id(parameter) not in head_parameters:
            parameter.requires_grad_(not frozen)


def pretrained_available(name: str) -> bool:
    """Whether `name`'s pretrained weights load without a network: cached, or shipped in an installed package.

    Each builder module answers with `weights_available(function)`; without one, the answer is no.
    """
    arch = get_architecture(name)
    if not arch.has_pretrained:
        return False
    module, _, function = arch.builder.partition(":")
    available = getattr(import_module(module), "weights_available", None)
    return bool(available and available(function))


def create_model(name: str, pretrained: bool | None = None, freeze: str = "none") -> nn.Module:
    """Build `name` with a 2-class head."""
    arch = get_architecture(name)
    FREEZE_MODE.check(freeze)
    if pretrained and not arch.has_pretrained:
        raise UserError(f"{name} has no pretrained weights: pass --no-pretrained")
    use_pretrained = resolve_pretrained(name, pretrained)
    if freeze == "backbone" and not use_pretrained:
        raise UserError("--freeze backbone needs pretrained weights: a random backbone learns nothing")
    model = build_network(arch, use_pretrained)
    _replace_head(model, arch.head)
    if freeze == "backbone":
        freeze_backbone(model, arch.head, frozen=True)  # the new head's parameters already train
    return model
