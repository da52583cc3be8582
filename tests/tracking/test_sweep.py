from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pneumonia_zoo.tracking.sweep import run_sweep
from pneumonia_zoo.training.config import TrainConfig
from tests.conftest import tiny_train_args


def test_sweep_runs_nested_children_and_names_the_best(tracking_store: str, fixture_data: Path) -> None:
    base = TrainConfig.build(**tiny_train_args(fixture_data, epochs=2, bootstrap=0))
    result = run_sweep(base, ["step", "cosine"], [1e-3], quiet=True)
    client = MlflowClient()
    children = mlflow.search_runs(
        experiment_names=["pneumonia-zoo"],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
        output_format="list",
    )
    assert sorted(r.data.params["schedule"] for r in children) == ["cosine", "step"]
    assert all(r.info.status == "FINISHED" for r in children)
    parent = client.get_run(result.parent_run_id)
    best = max(children, key=lambda r: (r.data.metrics["val_auc"], -r.data.metrics["val_loss"]))
    assert parent.data.tags["best_run_id"] == best.info.run_id == result.best_run_id
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"sweep_comparison.png", "sweep_table.md"} <= artifacts
    assert list(result.table["schedule"]) == ["step", "cosine"]
