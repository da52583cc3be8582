"""Architectures: one registry (torch-free, `architectures.py`) and the factory that builds them."""

from pneumonia_zoo.zoo.architectures import ARCHITECTURES, Architecture, get_architecture

__all__ = ["ARCHITECTURES", "Architecture", "get_architecture"]
