"""Linear probing, then fine-tuning (LP-FT; Kumar et al., ICLR 2022): the first epochs train the new head
alone on the pretrained features, then every layer trains from there.

A random head's gradients pull the pretrained features toward whatever separates the training images
first; fitting the head before the backbone moves distorts the features less, and the paper measures better
accuracy on shifted test data than fine-tuning from a random head. BatchNorm stays in training mode during
the probe so the head learns on the features as fine-tuning will compute them.
"""

from torch import nn


def freeze_backbone(network: nn.Module, head: str, frozen: bool) -> None:
    """Every parameter outside the `head` submodule stops (or resumes) receiving gradients. An optimizer
    skips a parameter without a gradient, weight decay included, and backward never enters the backbone."""
    head_parameters = {id(parameter) for parameter in network.get_submodule(head).parameters()}
    for parameter in network.parameters():
        if id(parameter) not in head_parameters:
            parameter.requires_grad_(not frozen)
