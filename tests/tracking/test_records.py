"""Version records: the tags a package is published with, read back typed (and old stores still read)."""

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from pneumonia_zoo.package.format import PackageConfig, PackageInfo
from pneumonia_zoo.stats.operating_points import OperatingPoint
from pneumonia_zoo.tracking.records import (
    EvaluationRecord,
    Lineage,
    RunRecord,
    VersionRecord,
    evaluation_summary_tags,
    evaluations_by_context,
    lineage_tags,
    version_tags,
)


def model_version(tags: dict[str, str], version: str = "4", source: str = "models:/m-00ff") -> ModelVersion:
    return ModelVersion(
        "pneumonia-classifier",
        version,
        0,
        source=source,
        run_id="r1",
        tags=[ModelVersionTag(key, value) for key, value in tags.items()],
    )


def package(**info: object) -> PackageConfig:
    return PackageConfig.model_validate(
        {
            "architecture": "small_cnn",
            "preprocessing": {"image_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3, "jpeg_quality": 75},
            "temperature": 1.25,
            "operating_points": {
                "balanced": OperatingPoint("balanced", 0.74, "prior", 0.9, 0.8),
                "youden": OperatingPoint("youden", 0.4, "J", 0.95, 0.7),
            },
            "metrics": {"val_auc": 0.99, "test_auc": 0.95, "test_images": 624.0, "train_seconds": 3.0},
            "info": info,
            "files": {"model.onnx": "00", "weights.safetensors": "11"},
        }
    )


def test_a_published_package_reads_back_as_the_same_record() -> None:
    tags = version_tags(package(pretrained=True)) | lineage_tags(Lineage(adapted_from="2", site="nih"))
    record = VersionRecord.from_mlflow(model_version(tags), ["champion"])
    assert record.architecture == "small_cnn" and record.image_size == 64 and record.kind == "single"
    assert record.pretrained is True and record.onnx is True and record.guard is False
    assert record.threshold == 0.74 and record.operating_point == "balanced"
    assert record.operating_points == {"balanced": 0.74, "youden": 0.4}
    assert record.temperature == 1.25
    assert record.metrics == {"val_auc": 0.99, "test_auc": 0.95, "test_images": 624.0}  # no train_seconds
    assert record.lineage.parent == "2" and record.lineage.site == "nih"
    assert record.uri == "models:/pneumonia-classifier/4" and record.logged_model_id == "m-00ff"
    assert record.is_champion("champion") and not record.is_champion("challenger")


def test_tags_keep_their_names_and_formats() -> None:
    """What stores written before (results/store/) hold, and other MLflow clients read."""
    tags = version_tags(package(pretrained=False))
    assert (
        tags["val_auc"] == "0.990000" and tags["threshold"] == "0.740000" and tags["temperature"] == "1.2500"
    )
    assert tags["pretrained"] == "False" and tags["onnx"] == "True" and tags["guard"] == "False"
    assert tags["image_size"] == "64" and tags["operating_point"] == "balanced" and tags["kind"] == "single"


def test_an_old_untyped_version_still_reads() -> None:
    """Tags as the first stores wrote them: strings throughout, an ensemble's pretrained comma-joined."""
    old = {
        "architecture": "ensemble",
        "kind": "ensemble",
        "image_size": "efficientnet_lite0,efficientnet_lite1",
        "pretrained": "True,True",
        "members": "efficientnet_lite0,efficientnet_lite1",
        "val_auc": "not a number",
        "eval_external_site_auc": "0.71",
        "eval_external_site_flag_rate": "0.5",
        "eval_test_images": "624.000000",
        "starter": "true",
    }
    record = VersionRecord.from_mlflow(model_version(old, source="file:///x"))
    assert record.image_size is None and record.pretrained is None and record.pretrained_text == "True,True"
    assert record.metrics == {} and record.logged_model_id is None and record.lineage.starter
    assert record.lineage.members == ["efficientnet_lite0", "efficientnet_lite1"]
    assert record.evaluations == {"external_site": {"auc": 0.71, "flag_rate": 0.5}, "test": {"images": 624.0}}
    assert evaluations_by_context(record.flat_evaluations()) == record.evaluations


def test_evaluation_summaries() -> None:
    metrics = {"external_auc": 0.8, "external_ece": 0.05, "external_images": 10.0, "external_tp": 3.0}
    assert evaluation_summary_tags("external", metrics) == {
        "eval_external_auc": "0.800000",
        "eval_external_ece": "0.050000",
        "eval_external_images": "10.000000",
    }
    run = RunRecord(
        run_id="r",
        metrics={"nih_auc": 0.9, "nih_images": 100.0},
        tags={"evaluation_context": "nih", "evaluation_dataset": "manifest M.csv"},
        start_time=86_400_000,
    )
    evaluation = EvaluationRecord.from_run(run)
    assert (evaluation.context, evaluation.dataset, evaluation.date) == (
        "nih",
        "manifest M.csv",
        "1970-01-02",
    )
    assert evaluation.metrics["auc"] == 0.9 and evaluation.metrics["sensitivity"] is None


def test_untyped_package_info_reads_into_types() -> None:
    info = PackageInfo.model_validate(
        {"pretrained": "True", "seed": "7", "val_fraction": "0.2", "limit": "None", "prior": "0.740000"}
    )
    assert (info.pretrained, info.seed, info.val_fraction, info.limit, info.prior) == (
        True,
        7,
        0.2,
        None,
        0.74,
    )
    ensemble = PackageInfo.model_validate({"pretrained": "True,False", "members": "models:/a/1,models:/a/2"})
    assert ensemble.pretrained is None and ensemble.members_pretrained == [True, False]
    assert ensemble.members == ["models:/a/1", "models:/a/2"]
