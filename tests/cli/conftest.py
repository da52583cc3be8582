"""A store holding the shipped starter model as its champion, for the commands that read a registry."""

from collections.abc import Iterator

import pytest

from tests.conftest import store_for


@pytest.fixture(scope="session")
def starter_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A session-wide store whose version 1, its champion, is the shipped starter (ONNX, float16).

    Read it only: a test that registers, logs or moves an alias uses its own store."""
    from pneumonia_zoo.workflows.starter import ensure_champion

    uri = f"sqlite:///{tmp_path_factory.mktemp('starter-store') / 'mlflow.db'}"
    assert ensure_champion(store_for(uri)) == "1"
    yield uri
