"""Architectures: one registry of builders, each with a 2-class head and a Grad-CAM layer."""

from pneumonia_zoo.zoo.registry import ARCHITECTURES, Architecture, create_model, get_architecture

__all__ = ["ARCHITECTURES", "Architecture", "create_model", "get_architecture"]
