"""The Store: built from injected settings (never from the environment or MLflow's globals), and the
registry questions it owns, on real sqlite stores holding real (untrained) packages."""

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from pneumonia_zoo.config import Settings
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.package.build import write_single
from pneumonia_zoo.package.format import PackageConfig
from pneumonia_zoo.tracking.publish import publish
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.zoo.factory import create_model
from tests.conftest import mlflow_globals, registry_client, store_for
from tests.package.helpers import make_package


def register(store: Store, package_dir: Path) -> str:
    """Log and register a package as a new version, the way every producer does (publish)."""
    store.activate()
    with mlflow.start_run():
        return publish(store, package_dir)


def efficientnet_package(directory: Path) -> Path:
    """A second architecture (random weights: only its tags and loading matter here)."""
    config = PackageConfig(architecture="efficientnet_lite0", preprocessing=Preprocessing(32))
    write_single(create_model("efficientnet_lite0", pretrained=False), config, directory, with_onnx=False)
    return directory


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Store A: v1 small_cnn, v2 efficientnet_lite0 (@champion), v3 small_cnn (@challenger, @staging).
    Store B: v1 small_cnn (@champion). Two stores whose champions differ in architecture."""
    root = tmp_path_factory.mktemp("two-stores")
    uri_a, uri_b = f"sqlite:///{root / 'a' / 'mlflow.db'}", f"sqlite:///{root / 'b' / 'mlflow.db'}"
    with mlflow_globals():
        store_a, store_b = store_for(uri_a), store_for(uri_b)
        make_package(root / "small", onnx=False)
        for package in (root / "small", efficientnet_package(root / "efficientnet"), root / "small"):
            register(store_a, package)
        store_a.set_alias("2")
        store_a.set_alias("3", "challenger")
        store_a.set_alias("3", "staging")
        register(store_b, root / "small")
        store_b.set_alias("1")
    yield uri_a, uri_b


def test_settings_are_injected_not_read_from_the_environment(
    stores: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uri_a, uri_b = stores
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri_b)  # what MLflow itself would use
    with mlflow_globals():
        mlflow.set_tracking_uri(uri_b)
        mlflow.set_registry_uri(uri_b)
        store = Store(Settings(tracking_uri=uri_a))
        assert store.uri == uri_a
        assert store.champion_version() == "2"
        resolved, classifier = store.load(store.champion_uri, destination=tmp_path / "champion")
        assert resolved.version == "2" and resolved.architecture == "efficientnet_lite0"
        assert classifier.config.architecture == "efficientnet_lite0"
        assert [str(v.version) for v in store.versions()] == ["1", "2", "3"]
        assert store_for(uri_b).champion_version() == "1"  # B's champion is another model


def test_only_activate_moves_mlflows_global_uri(stores: tuple[str, str], tmp_path: Path) -> None:
    uri_a, uri_b = stores
    with mlflow_globals():
        mlflow.set_tracking_uri(uri_b)
        mlflow.set_registry_uri(uri_b)
        store = store_for(uri_a)
        unchanged = {"tracking": uri_b, "registry": uri_b}

        def global_uris() -> dict[str, str]:
            return {"tracking": mlflow.get_tracking_uri(), "registry": mlflow.get_registry_uri()}

        calls = {
            "describe": store.describe,
            "versions": store.versions,
            "champion_version": store.champion_version,
            "latest_per_architecture": lambda: store.latest_per_architecture(store.versions()),
            "evaluations": lambda: store.evaluations("1"),
            "find_run": lambda: store.find_run(store.versions()[0].run_id),
            "resolve": lambda: store.resolve("models:/pneumonia-classifier@challenger"),
            "reachable": store.reachable,
            "get_run": lambda: registry_client(store).get_run(store.versions()[0].run_id),
            "set_version_tags": lambda: store.set_version_tags("1", {"checked": "yes"}),
            "set_alias": lambda: store.set_alias("1", "scratch"),
            "download_package": lambda: store.download_package("1", tmp_path / "download"),
            "load": lambda: store.load("models:/pneumonia-classifier/3", destination=tmp_path / "load"),
        }
        try:
            for name, call in calls.items():
                call()
                assert global_uris() == unchanged, f"Store.{name} moved MLflow's global URI"
        finally:  # the module's stores are shared by the tests below
            registry_client(store).delete_registered_model_alias("pneumonia-classifier", "scratch")
            registry_client(store).delete_model_version_tag("pneumonia-classifier", "1", "checked")

        store.activate()  # the fluent API logs runs to A; the registry is only ever asked through clients
        assert global_uris() == {"tracking": uri_a, "registry": uri_b}


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://alice:s3cret@mlflow.example.org:5000", "http://mlflow.example.org:5000"),
        ("https://token-abc123@mlflow.example.org/team", "https://mlflow.example.org/team"),
        ("https://alice:p%40ss@mlflow.example.org", "https://mlflow.example.org"),
        ("https://alice:p@ss@mlflow.example.org", "https://mlflow.example.org"),  # a raw @ in a password
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_describe_never_shows_credentials(uri: str, shown: str) -> None:
    described = Store(Settings(tracking_uri=uri)).describe()  # builds a client, connects to nothing
    assert described == shown
    for secret in ("alice", "s3cret", "token-abc123", "p%40ss", "ss@"):
        assert secret not in described


def test_describe_names_a_sqlite_file_without_its_folders(stores: tuple[str, str]) -> None:
    assert Store(Settings(tracking_uri=stores[0])).describe() == "mlflow.db"


def test_latest_per_architecture(stores: tuple[str, str]) -> None:
    store = store_for(stores[0])
    latest = store.latest_per_architecture(store.versions())
    newest = [(v.architecture, v.version) for v in latest]
    assert newest == [("efficientnet_lite0", "2"), ("small_cnn", "3")]
    only_first_two = store.latest_per_architecture(store.versions()[:2])
    assert [str(v.version) for v in only_first_two] == ["2", "1"]


def test_records_carry_every_alias(stores: tuple[str, str]) -> None:
    uri_a, uri_b = stores
    store = store_for(uri_a)
    assert {v.version: v.aliases for v in store.versions()} == {
        "1": [],
        "2": ["champion"],
        "3": ["challenger", "staging"],
    }
    assert store.resolve("models:/pneumonia-classifier/3").aliases == ["challenger", "staging"]
    assert {v.version: v.aliases for v in store_for(uri_b).versions()} == {"1": ["champion"]}


def test_champion_version(stores: tuple[str, str]) -> None:
    uri_a, _ = stores
    assert store_for(uri_a).champion_version() == "2"
    assert store_for(uri_a, champion_alias="challenger").champion_version() == "3"
    assert store_for(uri_a, champion_alias="production").champion_version() is None  # no such alias
    unregistered = store_for(uri_a, registered_model_name="other")  # no such registered model
    assert unregistered.champion_version() is None
    assert unregistered.versions() == []


def test_version_tags_come_from_the_package(stores: tuple[str, str]) -> None:
    versions = {str(v.version): v for v in store_for(stores[0]).versions()}
    assert versions["2"].architecture == "efficientnet_lite0"
    assert versions["1"].guard is True and versions["2"].guard is False
    assert versions["3"].threshold == 0.37  # make_package's balanced point
    assert versions["3"].operating_points["balanced"] == 0.37
    raw = registry_client(store_for(stores[0])).get_model_version("pneumonia-classifier", "3").tags
    assert raw["threshold"] == "0.370000" and raw["guard"] == "True"
    assert (
        registry_client(store_for(stores[0]))
        .get_registered_model("pneumonia-classifier")
        .description.endswith("not a diagnostic device).")
    )
