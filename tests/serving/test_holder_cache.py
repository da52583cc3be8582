"""Promoting a version the service already holds swaps in that very object: no reload, no copy."""

from benchmarks.store import STARTER_DIR, register_copy
from pneumonia_zoo.config import Settings
from pneumonia_zoo.serving.holder import ModelHolder
from pneumonia_zoo.tracking.starter import ensure_champion
from pneumonia_zoo.tracking.store import connect


def point_champion_at(version: str) -> None:
    connect().set_registered_model_alias("pneumonia-classifier", "champion", version)


def test_a_cached_version_is_swapped_in_without_reloading(tracking_store: str) -> None:
    assert ensure_champion(STARTER_DIR) == "1"
    second = register_copy(STARTER_DIR, alias=None)
    holder = ModelHolder(Settings(reload_interval_s=0))
    assert holder.refresh() and holder.current.version == "1"
    asked_for = holder.get_version(second)  # e.g. /predict?version=2: loaded into the LRU cache
    assert asked_for is not holder.current

    point_champion_at(second)
    assert holder.refresh()
    assert holder.current is asked_for  # the cached object itself
    assert holder.get_version(second) is asked_for
    first = holder.get_version("1")  # the demoted champion went to the cache
    point_champion_at("1")
    assert holder.refresh() and holder.current is first
