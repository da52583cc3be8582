"""The shadow challenger: a version that always answers the opposite is scored on every champion answer,
recorded as kind shadow, and changes no answer; a full queue drops jobs and counts them."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pneumonia_zoo.package.io import read_config
from pneumonia_zoo.tracking.publish import register_package
from tests.conftest import copy_store, mlflow_globals, store_for
from tests.serving.conftest import make_client

# What an answer says; its request_id and latency differ from call to call by nature.
ANSWER_KEYS = (
    "label",
    "probabilities",
    "threshold",
    "operating_point",
    "uncertain",
    "out_of_population",
    "model",
)


@pytest.fixture(scope="module")
def opposite_store(registered_store: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's champion (version 1) and, as @challenger, version 2: the same network with its class
    names swapped, so that it always gives the other label."""
    directory = tmp_path_factory.mktemp("opposite")
    uri = copy_store(registered_store, directory / "mlflow.db")
    store = store_for(uri)
    package = store.download_package("1", directory / "download")
    config = read_config(package)
    config.class_names = tuple(reversed(config.class_names))
    (package / "model.json").write_text(config.to_json())
    with mlflow_globals():
        assert register_package(store, package, "opposite", alias="challenger") == "2"
    return uri


def answers(client: TestClient, images: list[bytes]) -> list[dict]:
    found = []
    for content in images:
        response = client.post("/api/v1/predict", files={"file": ("x.jpeg", content, "image/jpeg")})
        assert response.status_code == 200, response.text
        found.append(response.json())
    return found


def wait_for(check, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.1)
    raise TimeoutError("the shadow challenger never got there")


@pytest.fixture(scope="module")
def images(fixture_data: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((fixture_data / "test").glob("*/*.jpeg"))[:10]]


@pytest.fixture(scope="module")
def with_challenger(opposite_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    audit = tmp_path_factory.mktemp("shadow-audit") / "audit.db"
    yield from make_client(opposite_store, audit_url=f"sqlite:///{audit}", shadow_sample=1.0)


def test_an_opposite_challenger_changes_no_answer(
    with_challenger: TestClient, opposite_store: str, tmp_path: Path, images: list[bytes]
) -> None:
    def loaded() -> bool | None:
        return True if with_challenger.get("/api/v1/monitor").json()["shadow"]["version"] == "2" else None

    wait_for(loaded)
    shadowed = answers(with_challenger, images)
    for client in make_client(
        opposite_store, audit_url=f"sqlite:///{tmp_path / 'a.db'}", challenger_alias="nobody"
    ):
        assert client.get("/api/v1/monitor").json()["shadow"]["version"] is None
        alone = answers(client, images)
    assert [{k: a[k] for k in ANSWER_KEYS} for a in shadowed] == [
        {k: a[k] for k in ANSWER_KEYS} for a in alone
    ]
    assert all(a["model"]["version"] == "1" for a in shadowed)

    def shadow_of(rid: str) -> dict | None:
        found = with_challenger.get(f"/api/v1/predictions/{rid}").json()["shadow"]
        return found[0] if found else None

    for answer in shadowed:
        shadow = wait_for(lambda answer=answer: shadow_of(answer["request_id"]))
        assert shadow["kind"] == "shadow" and shadow["model"]["version"] == "2"
        assert shadow["label"] != answer["label"], "the challenger answers the opposite, and it was recorded"

    # A shadow's outcome is counted by its record's done-callback, a moment after the commit that made the
    # record visible above: the monitor is read once the count has caught up.
    def monitor_once_all_scored() -> dict | None:
        found = with_challenger.get("/api/v1/monitor").json()
        return found if found["shadow"]["jobs"]["scored"] == len(images) else None

    monitor = wait_for(monitor_once_all_scored)
    (pair,) = monitor["shadow"]["pairs"]
    assert (pair["champion"], pair["challenger"], pair["paired"], pair["agreement"]) == (
        "1",
        "2",
        len(images),
        0.0,
    )
    assert monitor["versions"]["2"]["kinds"] == {"champion": 0, "pinned": 0, "shadow": len(images)}
    gauges = [
        line for line in with_challenger.get("/metrics").text.splitlines() if "shadow_agreement{" in line
    ]
    assert gauges == ['pneumonia_zoo_shadow_agreement{challenger="2",champion="1"} 0.0']


def test_labelled_pairs_show_both_versions_figures(with_challenger: TestClient, images: list[bytes]) -> None:
    answer = answers(with_challenger, images[:1])[0]
    with_challenger.post(
        "/api/v1/feedback", json={"request_id": answer["request_id"], "label": answer["label"]}
    )
    wait_for(
        lambda: with_challenger.get(f"/api/v1/predictions/{answer['request_id']}").json()["shadow"] or None
    )
    (pair,) = with_challenger.get("/api/v1/monitor").json()["shadow"]["pairs"]
    assert pair["labelled"] >= 1
    assert set(pair["figures"]) == {"1", "2"}
    assert pair["figures"]["1"]["accuracy"] == 1.0 and pair["figures"]["2"]["accuracy"] == 0.0


def test_a_full_queue_drops_and_counts(opposite_store: str, tmp_path: Path) -> None:
    from pneumonia_zoo.audit.trail import AuditTrail
    from pneumonia_zoo.config import Settings
    from pneumonia_zoo.serving.holder import LoadedModel
    from pneumonia_zoo.serving.live_metrics import LiveMetrics
    from pneumonia_zoo.serving.metrics import ServiceMetrics
    from pneumonia_zoo.serving.shadow import ShadowScorer

    settings = Settings(tracking_uri=opposite_store, shadow_sample=1.0, shadow_queue=1)
    store = store_for(opposite_store)
    metrics = LiveMetrics(ServiceMetrics().registry)
    scorer = ShadowScorer(settings, store, AuditTrail(f"sqlite:///{tmp_path / 'a.db'}"), metrics)
    _, classifier = store.load("models:/pneumonia-classifier/2", destination=tmp_path / "model")
    champion = LoadedModel("pneumonia-classifier", "1", classifier)
    scorer.challenger = LoadedModel("pneumonia-classifier", "2", classifier)  # its thread is not running
    for _ in range(3):
        scorer.offer(champion, [], [], [])
    assert metrics.shadow_counts() == {"scored": 0, "dropped": 2, "failed": 0}
    scorer.challenger = LoadedModel("pneumonia-classifier", "1", classifier)  # the champion itself: nothing
    scorer.offer(champion, [], [], [])
    assert metrics.shadow_counts()["dropped"] == 2
