"""`pneumonia-zoo evaluate` on data a user brings: a flat NORMAL/ + PNEUMONIA/ folder, a manifest, DICOM,
one class only; patient-level intervals; bad input refused in one line; `--log` recorded in MLflow."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from PIL import Image

from pneumonia_zoo.stats.intervals import cluster_bootstrap
from pneumonia_zoo.workflows.evaluate import EVALUATION_EXPERIMENT, run_evaluation
from tests.cli.helpers import run_cli_here
from tests.conftest import registry_client, store_for
from tests.dicom_factory import monochrome2, source_grey, to_bytes
from tests.integration.test_train_register import cli

VERSION_1 = "models:/pneumonia-classifier/1"
NORMALS = ("IM-0050-0001.jpeg", "IM-0061-0001.jpeg", "IM-0077-0001.jpeg")
PNEUMONIAS = ("person118_bacteria_560.jpeg", "person150_bacteria_716.jpeg", "person1651_virus_2855.jpeg")
AS_DICOM = "person47_virus_99.jpeg"  # put in PNEUMONIA/ as a .dcm file


def labelled_folder(root: Path, fixture_data: Path, dicom: bool = True) -> Path:
    """NORMAL/ and PNEUMONIA/ copied from the fixture test split, plus one PNEUMONIA X-ray as DICOM."""
    for label, names in (("NORMAL", NORMALS), ("PNEUMONIA", PNEUMONIAS)):
        (root / label).mkdir(parents=True)
        for name in names:
            shutil.copy(fixture_data / "test" / label / name, root / label / name)
    if dicom:
        grey = source_grey(fixture_data / "test" / "PNEUMONIA" / AS_DICOM)
        (root / "PNEUMONIA" / AS_DICOM.replace(".jpeg", ".dcm")).write_bytes(to_bytes(monochrome2(grey)))
    return root


def strict_json(text: str) -> dict:
    """JSON as any consumer reads it: NaN and Infinity are not JSON (jq and JSON.parse refuse them)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def flat_folder(tmp_path_factory: pytest.TempPathFactory, fixture_data: Path) -> Path:
    return labelled_folder(tmp_path_factory.mktemp("flat") / "hospital_b", fixture_data)


@pytest.fixture(scope="module")
def logged_evaluation(scratch_store: str, flat_folder: Path) -> dict:
    """One real `evaluate --data DIR --json --log`, whose output several tests below read."""
    result = cli(
        "evaluate",
        "--model",
        VERSION_1,
        "--data",
        str(flat_folder),
        "--json",
        "--log",
        "--bootstrap",
        "50",
        store=scratch_store,
    )
    return json.loads(result.stdout)


def test_a_flat_folder_gets_patient_intervals_calibration_and_the_flag_rate(
    logged_evaluation: dict, scratch_store: str, flat_folder: Path
) -> None:
    output = logged_evaluation
    assert output["model"]["version"] == "1"
    assert output["data"] == {
        "source": "hospital_b/",
        "context": "external",
        "images": 7,
        "patients": 7,
        "unreadable": 0,
    }
    assert "patients" in output["ci95_method"] and "50 resamples" in output["ci95_method"]
    for metric in ("accuracy", "sensitivity", "specificity", "auc", "brier", "ece"):
        low, high = output["ci95"][metric]
        assert 0 <= low <= high <= 1, metric
    assert set(output["calibration"]) == {"ece", "brier", "bins"}
    flagged = output["out_of_population"]
    assert flagged["flag_rate"] == pytest.approx(flagged["flagged"] / 7)
    # What was printed is what the evaluation computed (the same code in this process, same seed).
    here = run_evaluation(store_for(scratch_store), VERSION_1, flat_folder, bootstrap=50, quiet=True)
    assert output["metrics"]["auc"] == pytest.approx(here.evaluation.metrics["auc"])
    assert output["calibration"]["ece"] == pytest.approx(here.evaluation.calibration["ece"])
    assert output["calibration"]["brier"] == pytest.approx(here.evaluation.calibration["brier"])
    assert output["ci95"]["auc"] == pytest.approx(list(here.evaluation.intervals["auc"]))


def test_dicom_files_in_the_folder_are_read(
    logged_evaluation: dict, registered_store: str, fixture_data: Path, tmp_path: Path
) -> None:
    assert logged_evaluation["data"]["images"] == 7 and logged_evaluation["data"]["unreadable"] == 0
    # The same grey pixels as lossless PNG and as 8-bit DICOM must reach the model as the same image.
    # (Pixels, not predictions: a barely trained model gives nearly one probability to every image.)
    for label, names in (("NORMAL", NORMALS), ("PNEUMONIA", PNEUMONIAS)):
        for name in names:
            grey = source_grey(fixture_data / "test" / label / name)
            for kind in ("png", "dicom"):
                (tmp_path / kind / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(grey).save(tmp_path / "png" / label / name.replace(".jpeg", ".png"))
            (tmp_path / "dicom" / label / name.replace(".jpeg", ".dcm")).write_bytes(
                to_bytes(monochrome2(grey))
            )
    store = store_for(registered_store)
    from_png = run_evaluation(store, VERSION_1, tmp_path / "png", bootstrap=0, quiet=True)
    from_dicom = run_evaluation(store, VERSION_1, tmp_path / "dicom", bootstrap=0, quiet=True)
    assert len(from_dicom.images.labels) == 6 and not from_dicom.images.unreadable
    assert [Path(p).suffix for p in from_dicom.evaluation.predictions.files] == [".dcm"] * 6
    np.testing.assert_array_equal(from_dicom.images.pixels.numpy(), from_png.images.pixels.numpy())
    np.testing.assert_array_equal(from_dicom.images.labels.numpy(), from_png.images.labels.numpy())
    np.testing.assert_allclose(from_dicom.evaluation.predictions.probs, from_png.evaluation.predictions.probs)


def test_log_links_the_metrics_to_the_versions_logged_model(
    logged_evaluation: dict, scratch_store: str
) -> None:
    store = store_for(scratch_store)
    run = registry_client(store).get_run(logged_evaluation["logged_run"])
    assert (
        run.info.experiment_id
        == registry_client(store).get_experiment_by_name(EVALUATION_EXPERIMENT).experiment_id
    )
    assert (
        run.data.tags["evaluated_model_version"] == "1" and run.data.tags["evaluation_context"] == "external"
    )
    assert run.data.metrics["external_images"] == 7
    version = registry_client(store).get_model_version("pneumonia-classifier", "1")
    # The logged model the version was registered from (sqlite registries leave version.model_id empty).
    model_id = version.model_id or version.source.removeprefix("models:/")
    linked = {
        m.key: m
        for m in registry_client(store).get_logged_model(model_id).metrics
        if m.run_id == run.info.run_id
    }
    assert linked["external_auc"].value == pytest.approx(logged_evaluation["metrics"]["auc"])
    assert linked["external_ece"].value == pytest.approx(logged_evaluation["calibration"]["ece"])
    assert linked["external_auc"].dataset_name == "hospital_b/"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "hospital_b/"
    assert {tag.key: tag.value for tag in dataset_input.tags}[MLFLOW_DATASET_CONTEXT] == "external"
    assert float(version.tags["eval_external_auc"]) == pytest.approx(
        logged_evaluation["metrics"]["auc"], abs=1e-6
    )


def test_a_manifest_with_several_images_per_patient_widens_the_interval(
    registered_store: str, fixture_data: Path, tmp_path: Path
) -> None:
    """Eight patients with three images each (the same X-ray saved three times: images of one patient
    are strongly correlated). Resampling patients must give a wider interval than resampling images."""
    rows = []
    for label, names in (
        ("NORMAL", NORMALS + ("IM-0109-0001.jpeg",)),
        ("PNEUMONIA", PNEUMONIAS + ("person151_bacteria_718.jpeg",)),
    ):
        for number, name in enumerate(names):
            patient = f"{label.lower()}-patient-{number}"
            for copy in range(3):
                image = tmp_path / "images" / f"{patient}-{copy}.jpeg"
                image.parent.mkdir(exist_ok=True)
                shutil.copy(fixture_data / "test" / label / name, image)
                rows.append({"path": f"images/{image.name}", "label": label, "patient": patient})
    manifest = tmp_path / "study.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient"])
        writer.writeheader()
        writer.writerows(rows)

    output = json.loads(
        cli(
            "evaluate",
            "--model",
            VERSION_1,
            "--manifest",
            str(manifest),
            "--json",
            "--bootstrap",
            "200",
            store=registered_store,
        ).stdout
    )
    assert output["data"]["images"] == 24 and output["data"]["patients"] == 8
    assert output["data"]["source"] == "manifest study.csv" and output["data"]["context"] == "external"

    predictions = run_evaluation(
        store_for(registered_store), VERSION_1, None, manifest=manifest, bootstrap=0, quiet=True
    ).evaluation.predictions
    threshold = output["operating_point"]["threshold"]
    by_patient = cluster_bootstrap(predictions.labels, predictions.probs, predictions.groups, threshold, 200)
    by_image = cluster_bootstrap(
        predictions.labels, predictions.probs, np.arange(len(predictions.labels)), threshold, 200
    )
    assert output["ci95"]["brier"] == pytest.approx(list(by_patient["brier"]))  # what the CLI computed
    patient_width = np.subtract(*by_patient["brier"][::-1])
    image_width = np.subtract(*by_image["brier"][::-1])
    assert patient_width > 1.2 * image_width > 0


def pneumonias_only(fixture_data: Path, tmp_path: Path, names: tuple[str, ...]) -> Path:
    """A folder holding only PNEUMONIA/: these fixture test images."""
    folder = tmp_path / "pneumonias_only"
    (folder / "PNEUMONIA").mkdir(parents=True)
    for name in names:
        shutil.copy(fixture_data / "test" / "PNEUMONIA" / name, folder / "PNEUMONIA" / name)
    return folder


def test_a_folder_of_one_class_reports_what_it_can(
    registered_store: str, fixture_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = pneumonias_only(fixture_data, tmp_path, PNEUMONIAS)
    result = run_cli_here(
        monkeypatch,
        capsys,
        registered_store,
        "evaluate",
        "--model",
        VERSION_1,
        "--data",
        str(folder),
        "--bootstrap",
        "50",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    assert lines["specificity"].split() == ["specificity", "n/a"]
    assert lines["auc"].split() == ["auc", "n/a"]  # one class: no ROC curve
    sensitivity = float(lines["sensitivity"].split()[1])
    assert 0 <= sensitivity <= 1
    assert "3 images of 3 patients" in result.stdout.splitlines()[0]


def test_json_of_a_one_class_folder_is_valid_json(
    registered_store: str, fixture_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """`--json` is for machines: an undefined metric must be null, not the NaN no JSON parser accepts."""
    folder = pneumonias_only(fixture_data, tmp_path, PNEUMONIAS[:1])
    result = run_cli_here(
        monkeypatch,
        capsys,
        registered_store,
        "evaluate",
        "--model",
        VERSION_1,
        "--data",
        str(folder),
        "--bootstrap",
        "0",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    output = strict_json(result.stdout)
    assert output["metrics"]["specificity"] is None and output["metrics"]["auc"] is None
    assert 0 <= output["metrics"]["sensitivity"] <= 1


def test_a_missing_folder_is_one_line(registered_store: str) -> None:
    result = cli("evaluate", "--data", "/nonexistent/hospital", store=registered_store, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: /nonexistent/hospital does not exist"]


def test_an_unknown_label_in_a_manifest_is_one_line(
    registered_store: str, tmp_path: Path, fixture_data
) -> None:
    """In a real process, after torch and MLflow have loaded: still one line, no warnings, no traceback."""
    shutil.copy(fixture_data / "test" / "NORMAL" / NORMALS[0], tmp_path / NORMALS[0])
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"path,label\n{NORMALS[0]},NORMAL\n{NORMALS[0]},BACTERIA\n")
    result = cli(
        "evaluate", "--model", VERSION_1, "--manifest", str(manifest), store=registered_store, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: manifest labels.csv line 3: label must be NORMAL, PNEUMONIA, 0 or 1"
    ]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "csv without header",
            "error: manifest labels.csv needs a header with at least the columns path,label",
        ),
        (
            "data and manifest",
            "error: give either --data (a folder) or --manifest (a CSV of path,label[,patient])",
        ),
        (
            "split on a flat folder",
            "error: --split needs a Kaggle-style folder with train/ and test/; {folder} has neither",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    case: str, message: str, registered_store: str, fixture_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    folder = labelled_folder(tmp_path / "flat", fixture_data, dicom=False)
    manifest = tmp_path / "labels.csv"
    manifest.write_text(
        "flat/NORMAL/IM-0050-0001.jpeg,NORMAL\nflat/PNEUMONIA/person47_virus_99.jpeg,PNEUMONIA\n"
    )
    args = {
        "csv without header": ["--manifest", str(manifest)],
        "data and manifest": ["--data", str(folder), "--manifest", str(manifest)],
        "split on a flat folder": ["--data", str(folder), "--split", "val"],
    }[case]
    result = run_cli_here(monkeypatch, capsys, registered_store, "evaluate", "--model", VERSION_1, *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [message.format(folder=folder)]
    assert result.stdout == ""
