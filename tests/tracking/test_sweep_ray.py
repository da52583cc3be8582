import importlib.util
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking.sweep import RAY_MISSING, run_sweep
from pneumonia_zoo.training.config import TrainConfig
from tests.conftest import tiny_train_args

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (the optional extra: pip install .[ray])",
)


def children(parent_run_id: str) -> list:
    return mlflow.search_runs(
        experiment_names=["pneumonia-zoo"],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        output_format="list",
    )


@needs_ray
@pytest.mark.slow
def test_ray_backend_runs_trials_as_nested_runs_in_the_same_store(
    tracking_store: str, fixture_data: Path
) -> None:
    base = TrainConfig.build(**tiny_train_args(fixture_data, threads=1, bootstrap=0, register_model=False))
    result = run_sweep(base, ["step", "cosine"], [1e-3], quiet=True, backend="ray", num_cpus=2)
    runs = children(result.parent_run_id)
    assert sorted(r.data.params["schedule"] for r in runs) == ["cosine", "step"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["sweep_backend"] == "ray" for r in runs)  # set by the Ray task itself
    parent = MlflowClient().get_run(result.parent_run_id)
    assert parent.data.tags["sweep_backend"] == "ray"
    best = max(runs, key=lambda r: (r.data.metrics["val_auc"], -r.data.metrics["val_loss"]))
    assert parent.data.tags["best_run_id"] == best.info.run_id == result.best_run_id
    artifacts = {a.path for a in MlflowClient().list_artifacts(result.parent_run_id)}
    assert {"sweep_comparison.png", "sweep_table.md"} <= artifacts
    assert list(result.table["schedule"]) == ["step", "cosine"]
    assert set(result.table["run_id"]) == {r.info.run_id for r in runs}


def test_missing_ray_is_one_clear_error_before_any_run(
    tracking_store: str, fixture_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    base = TrainConfig.build(**tiny_train_args(fixture_data))
    with pytest.raises(UserError, match=r"pip install \.\[ray\]") as error:
        run_sweep(base, ["step"], [1e-3], backend="ray")
    assert str(error.value) == RAY_MISSING
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_unknown_backend_is_refused(tracking_store: str, fixture_data: Path) -> None:
    with pytest.raises(UserError, match="unknown --backend"):
        run_sweep(TrainConfig.build(**tiny_train_args(fixture_data)), ["step"], [1e-3], backend="dask")
