"""A sweep on Ray: trials in worker processes log child runs of the same parent, in the same store."""

import importlib.util
import sys
from pathlib import Path

import pytest

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.sweep import RAY_MISSING, run_sweep
from tests.conftest import registry_client, store_for, tiny_train_args
from tests.workflows.test_sweep import ranking_key

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (the optional extra: pip install .[ray])",
)


def children(store: Store, parent_run_id: str) -> list:
    experiment = registry_client(store).get_experiment_by_name("pneumonia-zoo").experiment_id
    return registry_client(store).search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}'")


@needs_ray
@pytest.mark.slow
def test_ray_backend_runs_trials_as_nested_runs_in_the_same_store(
    tracking_store: str, fixture_data: Path
) -> None:
    store = store_for(tracking_store)
    base = TrainConfig.build(**tiny_train_args(fixture_data, threads=1, bootstrap=0, register_model=False))
    result = run_sweep(base, store, ["step", "cosine"], [1e-3], quiet=True, backend="ray", num_cpus=2)
    runs = children(store, result.parent_run_id)
    assert sorted(r.data.params["schedule"] for r in runs) == ["cosine", "step"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["sweep_backend"] == "ray" for r in runs)  # set by the Ray task itself
    parent = registry_client(store).get_run(result.parent_run_id)
    assert parent.data.tags["sweep_backend"] == "ray"
    best = max(runs, key=lambda run: ranking_key(store, run))
    assert parent.data.tags["best_run_id"] == best.info.run_id == result.best_run_id
    artifacts = {a.path for a in registry_client(store).list_artifacts(result.parent_run_id)}
    assert {"sweep_comparison.png", "sweep_table.md"} <= artifacts
    assert list(result.table["schedule"]) == ["step", "cosine"]
    assert set(result.table["run_id"]) == {r.info.run_id for r in runs}
    assert store.versions() == []  # register_model=False reached the workers


def all_run_ids(store: Store) -> set[str]:
    return {
        r.info.run_id
        for r in registry_client(store).search_runs(
            [e.experiment_id for e in registry_client(store).search_experiments()]
        )
    }


def test_missing_ray_is_one_clear_error_before_any_run(
    registered_store: str, fixture_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    store = store_for(registered_store)  # an existing store: opening it costs nothing, and it must not change
    before = all_run_ids(store)
    base = TrainConfig.build(**tiny_train_args(fixture_data))
    with pytest.raises(UserError, match=r"pip install \.\[ray\]") as error:
        run_sweep(base, store, ["step"], [1e-3], backend="ray")
    assert str(error.value) == RAY_MISSING
    assert all_run_ids(store) == before


def test_unknown_backend_is_refused(fixture_data: Path, registered_store: str) -> None:
    store = store_for(registered_store)
    with pytest.raises(UserError, match="unknown --backend"):
        run_sweep(TrainConfig.build(**tiny_train_args(fixture_data)), store, ["step"], [1e-3], backend="dask")
