"""A new site through the CLI, as the README runs it: split-manifest, evaluate --by/--against, adapt, and
promote --not-worse-on; every refusal one line and exit 2, nothing registered."""

import csv
import json
from pathlib import Path

import pytest

from tests.cli.helpers import invoke
from tests.conftest import FIXTURE_DATA, copy_store, store_for
from tests.site_helpers import fixture_site_manifest, write_rows

CHAMPION = "models:/pneumonia-classifier@champion"


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def one_line_refusal(result) -> str:  # noqa: ANN001 (Typer's Result)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


def test_split_manifest_splits_by_patient_and_keeps_every_column(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    manifest = fixture_site_manifest(tmp_path / "site.csv", FIXTURE_DATA)
    fit, test = tmp_path / "out" / "fit.csv", tmp_path / "out" / "test.csv"
    args = ["split-manifest", "--manifest", str(manifest), "--fit-out", str(fit), "--test-out", str(test)]
    result = invoke(monkeypatch, tracking_store, *args, "--seed", "3", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    fit_rows, test_rows = rows_of(fit), rows_of(test)
    assert report["fit"]["images"] == len(fit_rows) and report["test"]["images"] == len(test_rows)
    assert len(fit_rows) + len(test_rows) == len(rows_of(manifest))
    assert not {r["patient"] for r in fit_rows} & {r["patient"] for r in test_rows}
    assert set(fit_rows[0]) == set(rows_of(manifest)[0])  # view, sex, ... travel with the images
    for rows in (fit_rows, test_rows):
        assert {r["label"] for r in rows} == {"NORMAL", "PNEUMONIA"}
    same = invoke(monkeypatch, tracking_store, *args[:-2], "--fit-out", str(fit), "--test-out", str(fit))
    assert "two different files" in one_line_refusal(same)


def test_evaluate_reports_subgroups_and_a_paired_comparison(
    monkeypatch: pytest.MonkeyPatch, site_store, tmp_path: Path
) -> None:
    """The issue's acceptance calls, on the fixture site (the starter champion, version 2 adapted)."""
    uri = site_store.uri
    by = invoke(
        monkeypatch, uri, "evaluate", "--model", CHAMPION, "--manifest", str(site_store.test),
        "--by", "view,sex", "--bootstrap", "100", "--json",
    )  # fmt: skip
    assert by.exit_code == 0, by.stderr
    report = json.loads(by.stdout)
    for column, value in (("view", "AP"), ("view", "PA"), ("sex", "F")):
        assert 0 <= report["subgroups"][column][value]["auc"] <= 1
    paired = invoke(
        monkeypatch, uri, "evaluate", "--model", "models:/pneumonia-classifier/2", "--manifest",
        str(site_store.test), "--against", CHAMPION, "--bootstrap", "100", "--json",
    )  # fmt: skip
    assert paired.exit_code == 0, paired.stderr
    report = json.loads(paired.stdout)
    assert {"auc"} <= set(report["metrics"]) and "ece" in report["calibration"]
    assert 0 <= report["out_of_population"]["flag_rate"] <= 1
    low, high = report["paired"]["delta_auc_ci"]
    assert low <= report["paired"]["delta_auc"] <= high
    text = invoke(
        monkeypatch, uri, "evaluate", "--model", "models:/pneumonia-classifier/2", "--manifest",
        str(site_store.test), "--against", CHAMPION, "--by", "view", "--bootstrap", "100",
    )  # fmt: skip
    assert "ΔAUC" in text.stdout and "view=AP" in text.stdout and "PPV" in text.stdout


def test_adapt_prints_its_version_and_leaves_the_champion(
    monkeypatch: pytest.MonkeyPatch, site_store, tmp_path: Path
) -> None:
    uri = copy_store(site_store.uri, tmp_path / "mlflow.db")
    result = invoke(
        monkeypatch, uri, "adapt", "--model", CHAMPION, "--manifest", str(site_store.fit), "--site", "second",
        "--holdout", str(site_store.holdout), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["version"] == "3"
    store = store_for(uri)
    assert store.champion_version() == "1" and store.resolve(
        "models:/pneumonia-classifier/3"
    ).lineage.site == ("second")


@pytest.mark.parametrize("problem", ["one class", "too few", "unreadable", "shares a patient"])
def test_adapt_refuses_bad_fit_in_one_line_and_registers_nothing(
    monkeypatch: pytest.MonkeyPatch, site_store, tmp_path: Path, problem: str
) -> None:
    uri = copy_store(site_store.uri, tmp_path / "mlflow.db")
    rows = rows_of(site_store.fit)
    holdout = site_store.holdout
    if problem == "one class":
        rows = [r for r in rows if r["label"] == "NORMAL"]
    elif problem == "too few":
        pneumonia = [r for r in rows if r["label"] == "PNEUMONIA"][:19]
        rows = [r for r in rows if r["label"] == "NORMAL"] + pneumonia
    elif problem == "unreadable":
        broken = tmp_path / "broken.jpeg"
        broken.write_bytes(b"\xff\xd8 not really a JPEG")
        rows = rows + [{**rows[0], "path": str(broken), "patient": "broken"}]
    else:
        holdout = write_rows(tmp_path / "holdout.csv", [{**rows[0]}, {**rows[-1]}])
    fit = write_rows(tmp_path / "fit.csv", rows)
    before = [v.version for v in store_for(uri).versions()]
    args = ["adapt", "--manifest", str(fit), "--site", "bad", "--holdout", str(holdout), "--json"]
    result = invoke(monkeypatch, uri, *args)
    line = one_line_refusal(result)
    assert result.stdout == ""
    expected = {
        "one class": "has only NORMAL images",
        "too few": "20",
        "unreadable": "could not be read",
        "shares a patient": "holdout",
    }
    assert expected[problem] in line, line
    assert [v.version for v in store_for(uri).versions()] == before


def test_promote_refuses_a_version_worse_than_the_champion(
    monkeypatch: pytest.MonkeyPatch, site_store, tmp_path: Path
) -> None:
    """A version adapted on FIT with every label swapped ranks the site's X-rays backwards: promoting it
    with --not-worse-on is refused in one line and the champion stays; without the check it would move."""
    uri = copy_store(site_store.uri, tmp_path / "mlflow.db")
    swapped = [
        {**r, "label": "NORMAL" if r["label"] == "PNEUMONIA" else "PNEUMONIA"}
        for r in rows_of(site_store.fit)
    ]
    fit = write_rows(tmp_path / "swapped.csv", swapped)
    adapted = invoke(monkeypatch, uri, "adapt", "--manifest", str(fit), "--site", "swapped", "--json")
    assert adapted.exit_code == 0, adapted.stderr
    version = json.loads(adapted.stdout)["version"]
    refused = invoke(
        monkeypatch, uri, "promote", "--version", version, "--not-worse-on", str(site_store.test), "--quiet"
    )
    assert "worse than the champion" in one_line_refusal(refused)
    assert store_for(uri).champion_version() == "1"
    moved = invoke(monkeypatch, uri, "promote", "--version", "2", "--not-worse-on", str(site_store.test))
    assert moved.exit_code == 0, moved.stderr
    assert "version 2 is now @champion (given by number)" in moved.stdout and "ΔAUC" in moved.stdout
    assert store_for(uri).champion_version() == "2"


def test_promote_better_on_moves_only_beyond_the_sample(
    monkeypatch: pytest.MonkeyPatch, site_store, tmp_path: Path
) -> None:
    """--better-on judges by the champion rule's score, paired: the labels-swapped version is refused, and
    once it is the champion (moved without the check), the starter beats it beyond the sample and moves;
    a site version is refused on chest_xray/'s validation split, which it was not validated on."""
    uri = copy_store(site_store.uri, tmp_path / "mlflow.db")
    swapped = [
        {**r, "label": "NORMAL" if r["label"] == "PNEUMONIA" else "PNEUMONIA"}
        for r in rows_of(site_store.fit)
    ]
    adapted = invoke(
        monkeypatch, uri, "adapt", "--manifest", str(write_rows(tmp_path / "swapped.csv", swapped)),
        "--site", "swapped", "--json",
    )  # fmt: skip
    assert adapted.exit_code == 0, adapted.stderr
    version = json.loads(adapted.stdout)["version"]
    test = str(site_store.test)
    refused = invoke(monkeypatch, uri, "promote", "--version", version, "--better-on", test, "--quiet")
    line = one_line_refusal(refused)
    assert f"version {version} is not shown better than the champion (version 1)" in line and "ΔBrier" in line
    assert store_for(uri).champion_version() == "1"
    assert invoke(monkeypatch, uri, "promote", "--version", version).exit_code == 0
    moved = invoke(monkeypatch, uri, "promote", "--version", "1", "--better-on", test, "--quiet")
    assert moved.exit_code == 0, moved.stderr
    assert "version 1 is now @champion" in moved.stdout and "ΔBrier -" in moved.stdout
    assert store_for(uri).champion_version() == "1"
    for check in ("--better-on", "--not-worse-on"):  # chest_xray/ is judged on validation, never test/
        other_split = invoke(monkeypatch, uri, "promote", "--version", "2", check, str(FIXTURE_DATA))
        assert "was not validated on the champion's split" in one_line_refusal(other_split)
        assert store_for(uri).champion_version() == "1"
