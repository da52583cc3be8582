"""`uvicorn fastapiapp:app`: the service (HTML pages, JSON API, health and metrics)."""

from pneumonia_zoo.serving import create_app

app = create_app()
