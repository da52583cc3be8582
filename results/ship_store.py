"""Copy a local MLflow store into the repo without the model weights, so a clone can browse it.

    python results/ship_store.py /work/runs/store/mlflow.db results/store

Keeps every run, metric, param, tag, registered version, alias and nested run, plus each run's plots
and reports. Leaves out the model packages (hundreds of MB for the torchvision architectures; the
champion's is pneumonia_zoo/assets/starter/), the grid of misclassified test images (it is dataset
content) and the train split listing. Artifact locations are rewritten relative to the
repository root, so `MLFLOW_TRACKING_URI=sqlite:///results/store/mlflow.db pneumonia-zoo ui` works
from there.
"""

import shutil
import sqlite3
import sys
from pathlib import Path

SKIP_DIRS = {"models"}
SKIP_FILES = {"test_misclassified.png", "train.csv"}


def ship(source_db: Path, dest: Path) -> None:
    source_root = source_db.parent / "mlruns"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with sqlite3.connect(source_db) as source, sqlite3.connect(dest / "mlflow.db") as target:
        source.backup(target)  # consistent copy even if a run is writing
    relative = f"./{dest.as_posix().rstrip('/')}/mlruns"
    with sqlite3.connect(dest / "mlflow.db") as db:
        for table, column in [
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("logged_models", "artifact_location"),
            ("model_versions", "storage_location"),
        ]:
            for prefix in (f"file://{source_root}", str(source_root)):
                db.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (prefix, relative))
    with sqlite3.connect(dest / "mlflow.db", isolation_level=None) as db:  # VACUUM needs autocommit
        db.execute("VACUUM")
    for path in source_root.rglob("*"):
        parts = path.relative_to(source_root).parts
        if not path.is_file() or SKIP_DIRS & set(parts[1:2]) or path.name in SKIP_FILES:
            continue
        target_path = dest / "mlruns" / path.relative_to(source_root)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target_path)


if __name__ == "__main__":
    ship(Path(sys.argv[1]), Path(sys.argv[2]))
