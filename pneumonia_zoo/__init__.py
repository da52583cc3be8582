"""Pneumonia Zoo: a model zoo for pneumonia detection on chest X-rays, and its service."""

__version__ = "0.1.0"

# Index order of the network's two outputs; every layer agrees on it.
CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
