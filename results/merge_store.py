"""Add the runs and registered versions of another store (a GPU recipe's gpu-store/) to a shipped store.

    python results/merge_store.py gpu-store/mlflow.db results/store/mlflow.db

Run it from the folder both stores' relative artifact locations start from: the repository root, with the
recipe's gpu-store.tar.gz unpacked there (DEVELOPERS.md, "When a GPU is lent"). MLflow has no merge, so each
source run is recreated in the target's experiment of the same name: its name, status, start and end times,
params, tags (MLflow's own too: source, git commit, the parent of a nested run, pointed at the parent's
copy), every metric's full history (steps and timestamps) and its artifacts (plots, reports, card; not what
results/ship_store.py leaves out), plus a `merged_from` tag naming the source run. Each logged model
and registered version is recreated after the target's own (new version numbers, in the source's order) with
its tags as they were, pointing to the new run; like results/ship_store.py, no model package travels.
Aliases are not copied: the target's champion stays. A source run already merged (its id in a `merged_from`
tag) is skipped, so a second merge of the same store adds nothing. An ensemble's `members` (param and tag:
its members' `models:/` URIs) is renumbered to the members' versions in the target, and so is each model
card's (its title, its own URI, its members' and a site version's parent), so they name the networks they
were built from, not the target's versions of the same number.
"""

import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ship_store import SKIP_DIRS, SKIP_FILES  # results/, beside this script

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # pneumonia_zoo from this checkout, installed or not
    sys.path.insert(0, str(ROOT))

MERGED_FROM = "merged_from"
PARENT = "mlflow.parentRunId"
USAGE = "usage: merge_store.py SOURCE/mlflow.db TARGET/mlflow.db (both existing stores)"
MODEL_NAME = "pneumonia-classifier"
BATCH = 900  # MLflow's log_batch takes at most 1000 metrics per call
CARD = "model_card.md"  # tracking/cards.py's CARD_ARTIFACT (this script runs without the package installed)
MEMBERS = "members"  # an ensemble run's param and tag: its members' models:/ URIs, comma-separated


def _renumber(pattern: str, text: str, numbers: dict[str, str], flags: int = 0) -> str:
    """`text` with each version number `pattern` matches (its group 2, after group 1) as the target's."""
    return re.sub(pattern, lambda m: m.group(1) + numbers.get(m.group(2), m.group(2)), text, flags=flags)


def renumber_members(value: str, numbers: dict[str, str], model_name: str = MODEL_NAME) -> str:
    """`models:/NAME/N` URIs (an ensemble's comma-separated members, or any text) with each source version
    N replaced by its target version (others kept)."""
    return _renumber(rf"(models:/{re.escape(model_name)}/)(\d+)\b", value, numbers)


def renumber_card(text: str, numbers: dict[str, str], model_name: str = MODEL_NAME) -> str:
    """A model card rendered in the source store, its version numbers (title, `models:/` URIs: its own,
    an ensemble's members, a site version's parent) as the target numbers them."""
    text = renumber_members(text, numbers, model_name)
    title = rf"^(# Model card: {re.escape(model_name)} version )(\d+)\b"
    text = _renumber(title, text, numbers, re.MULTILINE)
    return _renumber(r"(Version )(\d+)(?='s network)", text, numbers)  # a site card's parent


def merge(source_db: Path, target_db: Path, model_name: str = MODEL_NAME) -> list[tuple[str, str]]:
    """Returns (source version, new version) for each version added."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus, Metric, Param, RunTag

    source = MlflowClient(tracking_uri=f"sqlite:///{source_db}")
    target = MlflowClient(tracking_uri=f"sqlite:///{target_db}")
    # The registry looks a version's logged model up in the global tracking store, not its client's.
    mlflow.set_tracking_uri(f"sqlite:///{target_db}")
    experiments = {e.experiment_id: e for e in source.search_experiments()}
    copies = {  # source run id -> the target run merged from it
        run.data.tags[MERGED_FROM]: run.info.run_id
        for run in target.search_runs([e.experiment_id for e in target.search_experiments()])
        if MERGED_FROM in run.data.tags
    }
    source_runs = [
        run
        for run in source.search_runs(list(experiments), order_by=["attributes.start_time ASC"])
        if run.info.run_id not in copies
    ]
    versions = sorted(source.search_model_versions(f"name='{model_name}'"), key=lambda v: int(v.version))
    numbers = version_numbers(target, versions, copies, {run.info.run_id for run in source_runs}, model_name)
    new_runs: dict[str, str] = {}
    for run in source_runs:
        name = experiments[run.info.experiment_id].name
        found = target.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else target.create_experiment(name)
        tags = dict(run.data.tags)
        if MEMBERS in tags:
            tags[MEMBERS] = renumber_members(tags[MEMBERS], numbers, model_name)
        if PARENT in tags:  # a nested run (a sweep's trial): its parent was merged first (older)
            tags[PARENT] = new_runs.get(tags[PARENT], tags[PARENT])
        created = target.create_run(
            experiment_id, start_time=run.info.start_time, tags=tags | {MERGED_FROM: run.info.run_id},
            run_name=run.info.run_name,
        )  # fmt: skip
        run_id = created.info.run_id
        metrics = [
            Metric(key, m.value, m.timestamp, m.step)
            for key in run.data.metrics
            for m in source.get_metric_history(run.info.run_id, key)
        ]
        params = [
            Param(k, renumber_members(v, numbers, model_name) if k == MEMBERS else v)
            for k, v in run.data.params.items()
        ]
        target.log_batch(run_id, params=params, tags=[RunTag(k, v) for k, v in tags.items()])
        for start in range(0, len(metrics), BATCH):
            target.log_batch(run_id, metrics=metrics[start : start + BATCH])
        artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
        if artifacts.is_dir():  # what results/ship_store.py ships: no packages, no dataset content
            with tempfile.TemporaryDirectory() as tmp:
                kept = Path(tmp) / "artifacts"
                shutil.copytree(artifacts, kept, ignore=shutil.ignore_patterns(*SKIP_DIRS, *SKIP_FILES))
                if (card := kept / CARD).is_file():
                    card.write_text(renumber_card(card.read_text(), numbers, model_name))
                target.log_artifacts(run_id, str(kept))
        target.set_terminated(run_id, run.info.status, end_time=run.info.end_time)
        new_runs[run.info.run_id] = run_id

    added = []
    for version in versions:
        if version.run_id not in new_runs:
            continue  # its run was merged before (or is not in the source)
        run_id = new_runs[version.run_id]
        experiment_id = target.get_run(run_id).info.experiment_id
        model = source.get_logged_model(version.source.removeprefix("models:/"))
        logged = target.create_logged_model(
            experiment_id, name=model.name, source_run_id=run_id, tags=dict(model.tags),
            params=dict(model.params), model_type=model.model_type,
        )  # fmt: skip
        target.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        if not target.search_registered_models(f"name='{model_name}'"):
            target.create_registered_model(model_name)
        new = target.create_model_version(
            model_name, source=f"models:/{logged.model_id}", run_id=run_id, tags=dict(version.tags),
            model_id=logged.model_id,
        )  # fmt: skip
        if str(new.version) != numbers[str(version.version)]:  # what was renumbered above would be wrong
            raise RuntimeError(
                f"version {version.version} became {new.version}, not {numbers[str(version.version)]}"
            )
        added.append((version.version, new.version))
    return added


def version_numbers(
    target: "MlflowClient",
    versions: list["ModelVersion"],
    copies: dict[str, str],
    merging: set[str],
    model_name: str,
) -> dict[str, str]:
    """Source version -> its target version: merged before (found by its run's copy) or now (numbered after
    the target's own, in the source's order, as the registry will number them)."""
    existing = target.search_model_versions(f"name='{model_name}'")
    by_run = {version.run_id: str(version.version) for version in existing}
    numbers: dict[str, str] = {}
    following = max((int(version.version) for version in existing), default=0) + 1
    for version in versions:
        if version.run_id in copies and copies[version.run_id] in by_run:
            numbers[str(version.version)] = by_run[copies[version.run_id]]
        elif version.run_id in merging:
            numbers[str(version.version)] = str(following)
            following += 1
    return numbers


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(Path(path).is_file() for path in argv):
        print(USAGE, file=sys.stderr)
        return 2
    for old, new in merge(Path(argv[0]), Path(argv[1])):
        print(f"version {old} -> version {new}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
