"""The registry's commands on real sqlite stores: register-starter, promote, card, compare,
export-starter, and the refusals of ensemble and backfill-guard."""

import json
from pathlib import Path

import pytest

from pneumonia_zoo.package.io import read_config
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR, STARTER_DIR
from pneumonia_zoo.tracking.cards import stored_card
from tests.cli.helpers import flat, invoke
from tests.conftest import FIXTURE_DATA, copy_store, registry_client, store_for

CHAMPION_LINE = "pneumonia-classifier@champion is version 1\n"


def test_register_starter_makes_it_champion_once(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str
) -> None:
    first = invoke(monkeypatch, tracking_store, "register-starter")
    assert (first.exit_code, first.stdout) == (0, CHAMPION_LINE), first.stderr
    again = invoke(monkeypatch, tracking_store, "register-starter")
    assert (again.exit_code, again.stdout) == (0, CHAMPION_LINE)
    store = store_for(tracking_store)
    assert [str(v.version) for v in store.versions()] == ["1"] and store.champion_version() == "1"


def test_register_starter_without_a_package_registers_nothing(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    result = invoke(monkeypatch, tracking_store, "register-starter", "--dir", str(tmp_path))
    assert (result.exit_code, result.stdout) == (0, "")
    assert store_for(tracking_store).versions() == []


def test_promote_moves_an_alias_to_the_best_version(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str
) -> None:
    assert invoke(monkeypatch, tracking_store, "register-starter").exit_code == 0
    raw = registry_client(store_for(tracking_store)).get_model_version("pneumonia-classifier", "1").tags
    result = invoke(monkeypatch, tracking_store, "promote", "--alias", "staging")
    assert (result.exit_code, result.stdout) == (
        0,
        f"pneumonia-classifier version 1 is now @staging (val_brier {raw['val_brier']})\n"
        "ranked 1 version(s) on validation split random 0.15 seed 42\n",
    )
    assert store_for(tracking_store).resolve("models:/pneumonia-classifier@staging").version == "1"
    unknown = invoke(monkeypatch, tracking_store, "promote", "--metric", "val_luck")
    assert (
        unknown.exit_code == 1
        and unknown.stderr.startswith("error: ")
        and len(unknown.stderr.splitlines()) == 1
    )


def test_promote_on_an_empty_registry_says_so(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    result = invoke(monkeypatch, tracking_store, "promote")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: no version of 'pneumonia-classifier' has a 'val_brier' tag to rank by: train a model first\n",
    )


def test_card_of_the_champion_or_a_version(monkeypatch: pytest.MonkeyPatch, starter_store: str) -> None:
    # Pinned, so that the two renders compared below cannot straddle a minute (CI failed on exactly that).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    champion = invoke(monkeypatch, starter_store, "card")
    assert champion.exit_code == 0, champion.stderr
    members = ", ".join(member.architecture for member in read_config(STARTER_DIR).members)
    title = f"# Model card: pneumonia-classifier version 1 (ensemble of {members})\n"
    assert champion.stdout.startswith(title) and members.count("efficientnet_lite") == 2
    assert "Research tool, not a diagnostic device." in champion.stdout
    assert (
        invoke(monkeypatch, starter_store, "card", "-m", "models:/pneumonia-classifier/1").stdout
        == champion.stdout
    )
    assert "Generated 2023-11-14 22:13 UTC from the registry" in champion.stdout
    missing = invoke(monkeypatch, starter_store, "card", "--model", "models:/pneumonia-classifier/9")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: models:/pneumonia-classifier/9 ")


def test_card_refuses_a_malformed_date_epoch(monkeypatch: pytest.MonkeyPatch, starter_store: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    result = invoke(monkeypatch, starter_store, "card")
    assert (result.exit_code, result.stdout, result.stderr) == (
        2,  # a usage error, as a malformed option is
        "",
        "error: SOURCE_DATE_EPOCH='yesterday' is not a whole number of seconds since 1970-01-01 UTC\n",
    )


def test_card_log_stores_it_with_the_run(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    assert invoke(monkeypatch, tracking_store, "register-starter").exit_code == 0
    result = invoke(monkeypatch, tracking_store, "card", "--log")
    assert result.exit_code == 0, result.stderr
    assert stored_card(store_for(tracking_store), "1") == result.stdout.removesuffix("\n")


def test_compare_writes_its_report(
    monkeypatch: pytest.MonkeyPatch, starter_store: str, tmp_path: Path
) -> None:
    result = invoke(monkeypatch, starter_store, "compare", "--no-timing", "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith(f"\nreport written to {tmp_path / 'report' / 'compare.md'}\n")
    table = result.stdout.removesuffix(f"report written to {tmp_path / 'report' / 'compare.md'}\n")
    assert (
        table.startswith("| version ") and table.strip() in (tmp_path / "report" / "compare.md").read_text()
    )


def test_compare_needs_images_to_time_on(
    monkeypatch: pytest.MonkeyPatch, starter_store: str, tmp_path: Path
) -> None:
    result = invoke(monkeypatch, starter_store, "compare", "--images", str(tmp_path / "none"))
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {tmp_path / 'none'} is not a folder of images to time on (or pass --no-timing)\n",
    )


def test_export_starter_writes_the_version_and_checks_it(
    monkeypatch: pytest.MonkeyPatch, starter_store: str, tmp_path: Path
) -> None:
    out = tmp_path / "starter"
    result = invoke(
        monkeypatch,
        starter_store,
        "export-starter",
        "-m",
        "models:/pneumonia-classifier/1",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    written, checked = result.stdout.splitlines()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6  # an ensemble: members/
    assert written == f"wrote {out}: {size:.1f} MB (as registered)"
    count = min(8, len([p for p in SAMPLE_IMAGES_DIR.iterdir() if p.suffix == ".jpeg"]))
    assert (
        checked == f"largest change in a probability on {count} sample images: 0.00e+00"
    )  # the same weights
    assert (out / "model.json").is_file() and (out / "MODEL_CARD.md").is_file()


def test_export_starter_needs_a_model(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    result = invoke(monkeypatch, tracking_store, "export-starter")
    assert result.exit_code == 2 and "Missing option '--model'" in flat(result.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--model", "models:/pneumonia-classifier/1", "--dir", "."),
            "give either --model (a registered version) or --dir (a package folder)",
        ),
        ((), "give either --model (a registered version) or --dir (a package folder)"),
        (("--dir", ".", "--flag-rate", "0.5"), "--flag-rate must be between 0 and 0.5"),
        (("--dir", ".", "--flag-rate", "0"), "--flag-rate must be between 0 and 0.5"),
    ],
)
def test_backfill_guard_refusals(
    args: tuple, message: str, monkeypatch: pytest.MonkeyPatch, tracking_store: str, fixture_data: Path
) -> None:
    result = invoke(monkeypatch, tracking_store, "backfill-guard", "--data", str(fixture_data), *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"error: {message}\n")


@pytest.mark.parametrize(
    "command",
    [
        ("backfill-guard", "--dir", "."),
        (
            "ensemble",
            "--member",
            "models:/pneumonia-classifier/1",
            "--member",
            "models:/pneumonia-classifier/2",
        ),
    ],
)
def test_a_missing_data_folder_is_one_line(
    command: tuple, monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    result = invoke(monkeypatch, tracking_store, *command, "--data", str(tmp_path / "nowhere"))
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: data folder {tmp_path / 'nowhere'} does not exist\n",
    )


def test_an_ensemble_needs_two_members(
    monkeypatch: pytest.MonkeyPatch, starter_store: str, fixture_data: Path
) -> None:
    args = ("ensemble", "--member", "models:/pneumonia-classifier/1", "--data", str(fixture_data))
    result = invoke(monkeypatch, starter_store, *args)
    assert (result.exit_code, result.stderr) == (
        1,
        "error: an ensemble needs at least two --member versions\n",
    )


def test_promote_better_on_a_kaggle_folder_judges_its_validation_split(
    monkeypatch: pytest.MonkeyPatch, scratch_store: str, tmp_path: Path
) -> None:
    """Two versions trained on one split: --better-on chest_xray/ pairs them on that validation split
    (never test/), and moves exactly when `evaluate --split val --against` finds ΔBrier's interval below 0."""
    uri = copy_store(scratch_store, tmp_path / "mlflow.db")
    assert invoke(monkeypatch, uri, "promote", "--version", "1").exit_code == 0
    paired = invoke(
        monkeypatch, uri, "evaluate", "--model", "models:/pneumonia-classifier/2", "--against",
        "models:/pneumonia-classifier/1", "--data", str(FIXTURE_DATA), "--split", "val",
        "--bootstrap", "2000", "--json", "-q",
    )  # fmt: skip
    assert paired.exit_code == 0, paired.stderr
    brier = json.loads(paired.stdout)["paired"]["brier"]
    result = invoke(monkeypatch, uri, "promote", "--version", "2", "--better-on", str(FIXTURE_DATA), "-q")
    if brier["delta_brier_ci"][1] < 0:
        assert result.exit_code == 0 and store_for(uri).champion_version() == "2"
    else:
        assert result.exit_code == 2 and store_for(uri).champion_version() == "1"
        low, high = brier["delta_brier_ci"]  # the same images and resamples as promote's
        expected = f"ΔBrier {brier['delta_brier']:+.4f}, 95% CI [{low:+.4f}, {high:+.4f}]"
        assert f"on {FIXTURE_DATA.name}/val: {expected}" in result.stderr
