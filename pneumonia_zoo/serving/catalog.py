"""What the registry holds, described for the API and the models page (the store answers; this shapes)."""

from pneumonia_zoo.serving.schemas import ModelVersionInfo
from pneumonia_zoo.tracking.records import VersionRecord
from pneumonia_zoo.tracking.store import Store


def describe(record: VersionRecord, store: Store) -> ModelVersionInfo:
    base = store.settings.mlflow_ui_url.rstrip("/")
    return ModelVersionInfo(
        name=record.name,
        version=record.version,
        architecture=record.architecture,
        image_size=record.image_size,
        threshold=record.threshold,
        champion=record.is_champion(store.champion_alias),
        aliases=record.aliases,
        onnx=record.onnx,
        kind=record.kind,
        pretrained=record.pretrained,
        metrics=record.metrics,
        mlflow_url=f"{base}/#/models/{record.name}/versions/{record.version}",
        card_url=f"/api/v1/models/{record.version}/card",
        evaluations=record.flat_evaluations(),
        site=record.lineage.site,
        parent=record.lineage.parent,
    )


def all_versions(store: Store) -> list[ModelVersionInfo]:
    """Every version, newest first (blocking: call in a thread)."""
    return catalog(store)[0]


def catalog(store: Store) -> tuple[list[ModelVersionInfo], list[ModelVersionInfo]]:
    """(every version newest first, the newest version of each architecture): one registry read."""
    versions = store.versions()
    infos = {v.version: describe(v, store) for v in versions}
    latest = [infos[v.version] for v in store.latest_per_architecture(versions)]
    return [infos[v.version] for v in reversed(versions)], latest
