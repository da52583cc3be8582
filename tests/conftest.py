"""Shared fixtures: the shipped fixture images, the full dataset when present, MLflow stores."""

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pneumonia_zoo.config import Settings, get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_DATA = FIXTURES / "chest_xray"  # 38 real images from Kermany et al. (see README)
FIXTURE_ORIGINALS = FIXTURES / "originals"  # 2 full-resolution originals


def full_dataset_root() -> Path | None:
    """The full chest_xray/ set: $PNEUMONIA_ZOO_DATA, else ../shared/data/chest_xray."""
    candidates = [
        os.environ.get("PNEUMONIA_ZOO_DATA"),
        SHARED_DATA / "chest_xray",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session", autouse=True)
def private_temp_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every temporary file this test process and its children make without a folder of their own
    (tempfile, TMPDIR: MLflow's downloads, multiprocessing's listener folders, launchers' scratch) goes into
    one folder, removed at the end: a run leaves nothing behind in the machine's temporary root. Pytest's
    own folders (tmp_path, kept for failed tests) are placed first and stay where pytest keeps them. Short:
    Ray puts Unix sockets under it (108 bytes at most)."""
    tmp_path_factory.getbasetemp()
    root = tempfile.mkdtemp(prefix="pz-")
    os.chmod(root, 0o755)  # as /tmp is to them: servers the tests run as another user (postgres) reach in
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = root, root
    yield Path(root)
    if saved[0] is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def fixture_data() -> Path:
    return FIXTURE_DATA


@pytest.fixture(scope="session")
def originals() -> Path:
    return FIXTURE_ORIGINALS


@pytest.fixture(scope="session")
def full_data() -> Path:
    root = full_dataset_root()
    if root is None:
        pytest.skip("full dataset not found: set PNEUMONIA_ZOO_DATA or put it at ../shared/data/chest_xray")
    return root


@pytest.fixture(scope="session")
def train_only_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture images' train/ alone: with no test split a run skips the test evaluation and the
    robustness checks (most of a tiny run's time); validation still comes from train, as always."""
    import shutil

    root = tmp_path_factory.mktemp("train-only") / "chest_xray"
    shutil.copytree(FIXTURE_DATA / "train", root / "train")
    return root


def use_store(monkeypatch: pytest.MonkeyPatch, uri: str) -> str:
    """Point the environment (and so the CLI's settings) at `uri` for one test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    get_settings.cache_clear()
    return uri


def registry_client(store):
    """A plain MlflowClient on a Store's URI: what tests inspect the store with (the Store keeps its own)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)


def all_runs(store, experiment: str | None = None) -> list:
    """Every run of the store (or of one experiment, by name)."""
    client = registry_client(store)
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        return client.search_runs([found.experiment_id]) if found else []
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def client_for(uri: str):
    """MLflow's own client on `uri`: tests read the real store below the Store's typed view."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def store_for(uri: str, **settings):
    """A Store on `uri`, from settings built here (not from the environment)."""
    from pneumonia_zoo.tracking.store import Store

    return Store(Settings(tracking_uri=uri, **settings))


def _mlflow_uri_globals() -> tuple[str | None, str | None]:
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils._tracking_uri, registry_utils._registry_uri


def _set_mlflow_uri_globals(tracking: str | None, registry: str | None) -> None:
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_utils._tracking_uri, registry_utils._registry_uri = tracking, registry


@contextmanager
def mlflow_globals(uri: str | None = None) -> Iterator[None]:
    """MLflow's global tracking and registry URIs pointed at `uri` (if given), then put back exactly.

    The module globals themselves, not get_/set_: get_registry_uri() answers the tracking URI when none
    was set, and setting that back would pin every later client's registry to it. MLflow's setters also
    export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, which later clients and subprocesses would read."""
    mlflow_was_imported = "mlflow" in sys.modules  # if not, its globals are unset: import it only if needed
    saved = _mlflow_uri_globals() if mlflow_was_imported or uri is not None else (None, None)
    environment = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    if uri is not None:
        _set_mlflow_uri_globals(uri, uri)
    try:
        yield
    finally:
        if "mlflow" in sys.modules:
            _set_mlflow_uri_globals(*saved)
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def isolated_mlflow_globals() -> Iterator[None]:
    """Whatever a test does to MLflow's global URIs (activate(), the fluent API) ends with it."""
    with mlflow_globals():
        yield


def copy_store(uri: str, database: Path) -> str:
    """A consistent copy of the sqlite store `uri` (sqlite's backup, so nothing still in its journal is
    lost) at `database`; its artifacts stay where they are. Returns the copy's URI."""
    import sqlite3

    with sqlite3.connect(uri.removeprefix("sqlite:///")) as source, sqlite3.connect(database) as target:
        source.backup(target)
    return f"sqlite:///{database}"


@pytest.fixture
def tracking_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty sqlite MLflow store in a temporary directory (artifacts beside it)."""
    yield use_store(monkeypatch, f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()


def tiny_train_args(data: Path, **overrides) -> dict:
    """A training config that runs in seconds on the fixture images."""
    return {
        "arch": "small_cnn",
        "data": data,
        "epochs": 1,
        "image_size": 32,
        "batch_size": 8,
        "bootstrap": 50,
        "onnx": False,
        "threads": 2,
    } | overrides


@pytest.fixture(scope="session")
def registered_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A session-wide store holding one small_cnn version (with ONNX) promoted to champion.

    Its URI is returned, not activated: a test points at it with `use_store(monkeypatch, uri)`.
    """
    from pneumonia_zoo.training.config import TrainConfig
    from pneumonia_zoo.workflows.train import train

    directory = tmp_path_factory.mktemp("registered-store")
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    store = store_for(uri)
    train(TrainConfig.build(**tiny_train_args(FIXTURE_DATA, onnx=True)), store, quiet=True)
    store.promote()
    yield uri


# Both scratch versions share the split seed (an ensemble of them is valid) and differ in their lr; neither
# is trained like registered_store's version 1, so reading one store for the other cannot go unnoticed.
SCRATCH_SEED = 42
SCRATCH_LRS = (2e-3, 3e-3)


@pytest.fixture(scope="session")
def scratch_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A session-wide store for tests that log or register (registered_store is only read).

    Versions 1 and 2: small_cnn with ONNX, trained on the fixture images on one split."""
    from pneumonia_zoo.training.config import TrainConfig
    from pneumonia_zoo.workflows.train import train

    uri = f"sqlite:///{tmp_path_factory.mktemp('scratch-store') / 'mlflow.db'}"
    store = store_for(uri)
    for lr in SCRATCH_LRS:
        config = TrainConfig.build(**tiny_train_args(FIXTURE_DATA, onnx=True, seed=SCRATCH_SEED, lr=lr))
        train(config, store, quiet=True)
    return uri


@dataclass(frozen=True)
class SiteStore:
    uri: str
    fit: Path  # manifest of the FIT images (variants of the fixture train/ X-rays)
    holdout: Path  # manifest of held-out files (never decodable: never decoded)
    test: Path  # manifest of the fixture test/ X-rays, with view and sex
    result: dict  # the adapted version's AdaptResult.to_dict()
    seconds: float


@pytest.fixture(scope="session")
def site_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteStore]:
    from pneumonia_zoo.workflows.adapt import adapt
    from pneumonia_zoo.workflows.starter import ensure_champion
    from tests.site_helpers import site_images, write_rows

    root = tmp_path_factory.mktemp("site-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store = store_for(uri)
    assert ensure_champion(store) == "1"
    fit = write_rows(root / "fit.csv", site_images(root / "fit", FIXTURE_DATA / "train"))
    # The holdout: other patients' files that are not even images. Adapt reads their patients and
    # digests to refuse overlap; if anything decoded them, it would fail.
    holdout_rows = []
    for index in range(6):
        path = root / "holdout" / f"held-{index}.jpeg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an image " + bytes([index]))
        holdout_rows.append(
            {"path": str(path), "label": "NORMAL" if index % 2 else "PNEUMONIA", "patient": f"h{index}"}
        )
    holdout = write_rows(root / "holdout.csv", holdout_rows)
    test_rows = []
    for index, path in enumerate(sorted((FIXTURE_DATA / "test").rglob("*.jpeg"))):
        test_rows.append(
            {
                "path": str(path),
                "label": path.parent.name,
                "patient": f"t{index}",
                "view": "AP" if index % 2 else "PA",
                "sex": "F" if index % 3 else "M",
            }
        )
    test = write_rows(root / "test.csv", test_rows)
    result = adapt(store, store.champion_uri, "fixture-site", manifest=fit, holdout=holdout, quiet=True)
    yield SiteStore(uri, fit, holdout, test, result.to_dict(), result.seconds)
