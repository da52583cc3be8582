"""results/merge_store.py: a GPU recipe's store added to a shipped one, run as a script on real MLflow
stores: runs keep their metric histories, tags and artifacts, versions come after the target's own with
their tags, the target's champion stays, and merging twice adds nothing."""

import subprocess
import sys
from pathlib import Path

from mlflow.entities import LoggedModelStatus, Metric

from tests.conftest import PROJECT_ROOT, client_for, mlflow_globals

SCRIPT = PROJECT_ROOT / "results" / "merge_store.py"
MODEL = "pneumonia-classifier"
PARENT = "mlflow.parentRunId"


def make_store(root: Path, run_name: str, version_tags: dict[str, str]) -> str:
    """A store with one experiment, one run (a 3-step metric history and a plot) and one version."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = client_for(uri)
    experiment = client.create_experiment("pneumonia-zoo", artifact_location=str(root / "mlruns"))
    run = client.create_run(experiment, run_name=run_name, tags={"device": version_tags["device"]})
    client.log_batch(
        run.info.run_id, metrics=[Metric("val_auc", 0.9 + step / 100, 1000 + step, step) for step in range(3)]
    )
    client.log_param(run.info.run_id, "lr", "0.0005")
    plot = root / "val_reliability.png"
    plot.write_bytes(b"\x89PNG not really")
    client.log_artifact(run.info.run_id, str(plot), "plots")
    client.set_terminated(run.info.run_id, "FINISHED")
    trial = client.create_run(experiment, run_name=f"{run_name}-trial", tags={PARENT: run.info.run_id})
    client.set_terminated(trial.info.run_id, "FINISHED")
    model = client.create_logged_model(experiment, name="model", source_run_id=run.info.run_id)
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    client.create_registered_model(MODEL)
    with mlflow_globals(uri):  # the registry finds a version's logged model through the global store
        client.create_model_version(
            MODEL, f"models:/{model.model_id}", run.info.run_id, tags=version_tags, model_id=model.model_id
        )
    client.set_registered_model_alias(MODEL, "champion", "1")
    return uri


def merge(source: Path, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(source / "mlflow.db"), str(target / "mlflow.db")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_gpu_store_is_merged_once_with_histories_tags_and_artifacts(tmp_path: Path) -> None:
    source, target = tmp_path / "gpu-store", tmp_path / "store"
    source.mkdir(), target.mkdir()
    make_store(source, "lite2-gpu", {"device": "cuda", "device_name": "NVIDIA H100", "val_brier": "0.03"})
    target_uri = make_store(target, "lite0-cpu", {"device": "cpu", "val_brier": "0.02"})

    first = merge(source, target)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip() == "version 1 -> version 2"

    client = client_for(target_uri)
    added = client.get_model_version(MODEL, "2")
    assert added.tags == {"device": "cuda", "device_name": "NVIDIA H100", "val_brier": "0.03"}
    run = client.get_run(added.run_id)
    assert run.info.run_name == "lite2-gpu" and run.info.status == "FINISHED"
    assert run.data.tags["device"] == "cuda" and run.data.params == {"lr": "0.0005"}
    source_run_id = client_for(f"sqlite:///{source / 'mlflow.db'}").search_model_versions()[0].run_id
    assert run.data.tags["merged_from"] == source_run_id
    history = client.get_metric_history(run.info.run_id, "val_auc")
    expected = [(step, 0.9 + step / 100, 1000 + step) for step in range(3)]
    assert [(m.step, m.value, m.timestamp) for m in history] == expected
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/val_reliability.png"]
    assert (target / "mlruns" / run.info.run_id / "artifacts" / "plots" / "val_reliability.png").is_file()
    (trial,) = client.search_runs([run.info.experiment_id], "attributes.run_name = 'lite2-gpu-trial'")
    assert trial.data.tags[PARENT] == run.info.run_id  # still nested, under the parent's copy
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"  # the target's champion stays

    second = merge(source, target)
    assert second.returncode == 0 and second.stdout == ""
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 2
    assert len(client.search_runs([run.info.experiment_id])) == 4


def test_a_missing_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = merge(tmp_path / "nowhere", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "usage: merge_store.py SOURCE/mlflow.db TARGET/mlflow.db (both existing stores)"
    ]


def add_version(
    uri: str, run_name: str, params: dict[str, str], tags: dict[str, str], card: str | None = None
) -> str:
    """One more run (these params, tags and model card) registered as the next version of `uri`'s model."""
    client = client_for(uri)
    experiment = client.get_experiment_by_name("pneumonia-zoo").experiment_id
    run = client.create_run(experiment, run_name=run_name, tags=tags)
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    if card is not None:
        client.log_text(run.info.run_id, card, "model_card.md")
    client.set_terminated(run.info.run_id, "FINISHED")
    model = client.create_logged_model(experiment, name="model", source_run_id=run.info.run_id)
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    with mlflow_globals(uri):
        version = client.create_model_version(
            MODEL, f"models:/{model.model_id}", run.info.run_id, tags={"kind": "x"}, model_id=model.model_id
        )
    return str(version.version)


def test_an_ensembles_members_are_renumbered_to_the_targets_versions(tmp_path: Path) -> None:
    """Otherwise a merged ensemble's record and card would name the target's own versions of those numbers."""
    source, target = tmp_path / "source", tmp_path / "store"
    source.mkdir(), target.mkdir()
    source_uri = make_store(source, "lite0-aspect", {"device": "cpu"})
    add_version(source_uri, "lite1-aspect", {"lr": "0.0005"}, {})
    target_uri = make_store(target, "lite0", {"device": "cpu"})
    first = merge(source, target)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.splitlines() == ["version 1 -> version 2", "version 2 -> version 3"]

    # Built after the first merge: one member merged before, the other merged with it.
    add_version(source_uri, "lite2-aspect", {}, {})
    members = ",".join(f"models:/{MODEL}/{n}" for n in (1, 2, 3))
    card = (
        f"# Model card: {MODEL} version 4 (ensemble of a, b, c)\n\nIts own: models:/{MODEL}/4, from"
        f" `--member models:/{MODEL}/1 --member models:/{MODEL}/3`; another model: models:/{MODEL}/12\n"
    )
    add_version(source_uri, "ensemble", {"members": members}, {"members": members, "other": members}, card)
    second = merge(source, target)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.splitlines() == ["version 3 -> version 4", "version 4 -> version 5"]
    ensemble = client_for(target_uri).get_run(client_for(target_uri).get_model_version(MODEL, "5").run_id)
    renumbered = ",".join(f"models:/{MODEL}/{n}" for n in (2, 3, 4))
    assert ensemble.data.params["members"] == renumbered and ensemble.data.tags["members"] == renumbered
    assert ensemble.data.tags["other"] == members  # only the members are version numbers to rewrite
    merged_card = (target / "mlruns" / ensemble.info.run_id / "artifacts" / "model_card.md").read_text()
    assert merged_card == (
        f"# Model card: {MODEL} version 5 (ensemble of a, b, c)\n\nIts own: models:/{MODEL}/5, from"
        f" `--member models:/{MODEL}/2 --member models:/{MODEL}/4`; another model: models:/{MODEL}/12\n"
    )
