"""Promoting a version the service already holds swaps in that very object: no reload, no copy; and the
cache of other versions is bounded by memory, not only by count."""

import logging
from pathlib import Path

import pytest

from pneumonia_zoo.config import Settings
from pneumonia_zoo.resources import STARTER_DIR
from pneumonia_zoo.serving.holder import LoadedModel, ModelHolder
from pneumonia_zoo.tracking.publish import register_package
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.workflows.starter import ensure_champion


def _store(tmp_path: Path) -> Store:
    return Store(Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", reload_interval_s=0))


def test_a_cached_version_is_swapped_in_without_reloading(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert ensure_champion(store, STARTER_DIR) == "1"
    second = register_package(store, STARTER_DIR, "copy")
    holder = ModelHolder(store.settings, store)
    assert holder.refresh() and holder.current.version == "1"
    asked_for = holder.get_version(second)  # e.g. /predict?version=2: loaded into the LRU cache
    assert asked_for is not holder.current and asked_for.memory_bytes > 0

    store.set_alias(second)
    assert holder.refresh()
    assert holder.current is asked_for  # the cached object itself
    assert holder.get_version(second) is asked_for
    first = holder.get_version("1")  # the demoted champion went to the cache
    store.set_alias("1")
    assert holder.refresh() and holder.current is first


def _loads(caplog: pytest.LogCaptureFixture, version: str) -> int:
    """How many times the holder loaded (downloaded, verified, warmed up) `version`, from its log."""
    return sum(record.getMessage().startswith(f"loaded version {version} ") for record in caplog.records)


def test_the_cache_is_bounded_by_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(tmp_path)
    ensure_champion(store, STARTER_DIR)
    second = register_package(store, STARTER_DIR, "copy")

    def demote_the_first(settings: Settings) -> tuple[ModelHolder, LoadedModel]:
        """A holder serving version 1, then `second`: version 1 is offered to its cache."""
        store.set_alias("1")
        holder = ModelHolder(settings, store)
        assert holder.refresh()
        first = holder.current
        store.set_alias(second)
        assert holder.refresh() and holder.current.version == second
        return holder, first

    with caplog.at_level(logging.INFO, logger="pneumonia_zoo.serving.holder"):
        # With room (the defaults): the demoted champion is kept and handed out, never loaded again.
        holder, first = demote_the_first(store.settings)
        assert holder.get_version("1") is first and holder.get_version("1") is first
        assert _loads(caplog, "1") == 1
        caplog.clear()

        # Bounded at 1 MB: the same version (bigger than that) is dropped, and each request reloads it.
        tight = store.settings.model_copy(update={"model_cache_mb": 1.0, "model_cache_size": 3})
        holder, first = demote_the_first(tight)
        assert first.memory_bytes > 2**20
        assert "dropped version 1 from the model cache" in caplog.text
        again = holder.get_version("1")
        assert again is not first and again.version == "1"
        assert holder.get_version("1") is not again  # too big to keep even alone
        assert _loads(caplog, "1") == 3


def test_loads_and_swaps_are_logged_with_version_and_run(tmp_path: Path, caplog) -> None:
    store = _store(tmp_path)
    ensure_champion(store, STARTER_DIR)
    second = register_package(store, STARTER_DIR, "copy")
    holder = ModelHolder(store.settings, store)
    with caplog.at_level(logging.INFO, logger="pneumonia_zoo"):
        holder.refresh()
        store.set_alias(second)
        holder.refresh()
    run = store.resolve(f"models:/pneumonia-classifier/{second}").run_id
    assert f"loaded version {second}" in caplog.text
    assert f"serving pneumonia-classifier version {second}" in caplog.text
    assert f"run {run}), replacing version 1" in caplog.text
