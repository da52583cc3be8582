"""The serving layer: FastAPI HTML pages and JSON API over the registry's champion.

Nothing below this package imports it; the MLflow registry is its only input from training.
"""

from pneumonia_zoo.serving.app import create_app

__all__ = ["create_app"]
