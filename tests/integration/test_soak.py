"""A hot swap under concurrent load against a real uvicorn: nothing fails, versions only move forward.

A small run of benchmarks/soak.py: the starter is version 1 (champion), a copy of it is registered
as version 2 (no training), and the alias moves to it once a quarter of the requests have answered.
No timing is asserted; RSS growth is only bounded loosely (the old version stays cached by design).
"""

import pytest

from benchmarks.loadgen import load_uploads
from benchmarks.soak import run_soak
from pneumonia_zoo.resources import STARTER_DIR
from pneumonia_zoo.tracking.publish import register_package
from pneumonia_zoo.workflows.starter import ensure_champion
from tests.conftest import store_for

pytestmark = pytest.mark.slow


def test_hot_swap_under_concurrent_load(tracking_store, tmp_path, originals, record_property):
    store = store_for(tracking_store)
    assert ensure_champion(store, STARTER_DIR) == "1"
    new = register_package(store, STARTER_DIR, "soak-copy")
    report = run_soak(
        tracking_store,
        new,
        load_uploads(originals),
        requests=300,
        concurrency=16,
        logs=tmp_path,
        admin_reload=True,
        settle_s=1.0,
    )
    swap, rss = report["swap"], report["rss"]
    record_property("rss_growth", rss["growth"])
    record_property("switch_index", swap["switch_index"])

    assert swap["failed"] == 0, swap["failures"]
    assert swap["unnamed"] == 0 and swap["unknown_versions"] == []
    assert swap["versions_seen"] == ["1", new]  # both served: the swap happened mid-run
    assert swap["workers_moving_back"] == 0  # each client saw old, then new, never old again
    assert swap["stale_after_switch"] == 0  # nothing sent after the first new answer got the old one
    assert rss["growth"] is not None and rss["growth"] < 0.5, rss  # loose: a leak, not the second model
    assert rss["idle_mb"] > 0 and rss["settled_mb"] > 0 and rss["settled_vs_idle"] is not None, rss
