"""Settings read from the environment."""

import pytest

from pneumonia_zoo.config import Settings


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_tracking_uri_means_the_default_store(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", value)
    assert Settings().tracking_uri == "sqlite:///mlflow.db"


def test_a_tracking_uri_is_taken_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert Settings().tracking_uri == "http://127.0.0.1:5000"
