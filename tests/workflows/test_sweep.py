"""A sequential sweep: one nested run per configuration under a parent that names the best by val AUC."""

from pathlib import Path

from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.sweep import run_sweep
from tests.conftest import registry_client, store_for, tiny_train_args


def ranking_key(store: Store, run) -> tuple[float, float]:
    """What "best" means: the highest val AUC, then the lowest val_loss of the epoch whose weights were
    kept (the run's last logged val_loss may be a later, worse epoch)."""
    best_epoch = int(run.data.metrics["best_epoch"])
    history = registry_client(store).get_metric_history(run.info.run_id, "val_loss")
    (loss,) = [m.value for m in history if m.step == best_epoch]
    return run.data.metrics["val_auc"], -loss


def test_sweep_runs_nested_children_and_names_the_best(tracking_store: str, fixture_data: Path) -> None:
    store = store_for(tracking_store)
    base = TrainConfig.build(**tiny_train_args(fixture_data, epochs=2, bootstrap=0))
    result = run_sweep(base, store, ["step", "cosine"], [1e-3], quiet=True)
    client = registry_client(store)
    experiment = client.get_experiment_by_name("pneumonia-zoo").experiment_id
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    assert sorted(r.data.params["schedule"] for r in children) == ["cosine", "step"]
    assert all(r.info.status == "FINISHED" for r in children)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["sweep"] == "true" and parent.data.tags["sweep_backend"] == "sequential"
    best = max(children, key=lambda run: ranking_key(store, run))
    assert parent.data.tags["best_run_id"] == best.info.run_id == result.best_run_id
    assert result.table["val_loss"].notna().all()  # the tie-break has its values
    assert parent.data.metrics["best_val_auc"] == best.data.metrics["val_auc"]
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id)}
    assert {"sweep_comparison.png", "sweep_table.md"} <= artifacts
    assert list(result.table["schedule"]) == ["step", "cosine"]
    assert set(result.table["run_id"]) == {r.info.run_id for r in children}
    # Every trial registered its own version, tagged from its package.
    assert sorted(result.table["version"]) == sorted(str(v.version) for v in store.versions()) == ["1", "2"]
