"""The README's Results are the shipped store's: its table is rendered from results/store, and the
shipped starter is that store's champion."""

import json
import re
from pathlib import Path

import pytest

from pneumonia_zoo.workflows.compare import collect
from pneumonia_zoo.workflows.compare_report import summary_table
from tests.conftest import copy_store, store_for

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DB = ROOT / "results" / "store" / "mlflow.db"


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Every version of the shipped store, read from a copy (the committed file is never written)."""
    assert SHIPPED_DB.is_file(), "results/store/mlflow.db is missing: python results/ship_store.py ..."
    uri = copy_store(f"sqlite:///{SHIPPED_DB}", tmp_path_factory.mktemp("shipped") / "mlflow.db")
    return collect(store_for(uri))


def test_readme_results_table_is_the_shipped_store(rows: list[dict]) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = readme.split("## Results", 1)[1].split("\n## ", 1)[0]
    assert summary_table(rows) in results, "README's Results table differs from results/store (regenerate it)"
    assert (ROOT / "results" / "compare" / "summary.md").read_text().strip() == summary_table(rows)


def test_shipped_starter_is_the_shipped_champion(rows: list[dict]) -> None:
    (champion,) = [row for row in rows if row["champion"]]
    config = json.loads((ROOT / "pneumonia_zoo" / "assets" / "starter" / "model.json").read_text())
    assert config["info"]["source_model"] == f"models:/pneumonia-classifier/{champion['version']}"
    card = (ROOT / "pneumonia_zoo" / "assets" / "starter" / "MODEL_CARD.md").read_text()
    assert re.search(rf"\b{champion['architecture']}\b", card)
