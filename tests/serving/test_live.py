"""The live loop through the real app: request ids in answers, the record read back, feedback, the
monitor (JSON, page, gauges), the API key, recording off, and the policy when the database fails."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.serving.conftest import make_client

KEY = "live-key"


def post(client: TestClient, content: bytes, name: str = "xray.jpeg", **kwargs):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/predict", files={"file": (name, content, "image/jpeg")}, **kwargs)


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live-audit")


@pytest.fixture(scope="module")
def live(registered_store: str, audit_dir: Path) -> Iterator[TestClient]:
    yield from make_client(registered_store, audit_url=f"sqlite:///{audit_dir / 'audit.db'}")


@pytest.fixture(scope="module")
def images(fixture_data: Path) -> list[tuple[bytes, str]]:
    """(bytes, truth) of eight fixture X-rays, four of each class."""
    found = []
    for truth in ("NORMAL", "PNEUMONIA"):
        found += [(p.read_bytes(), truth) for p in sorted((fixture_data / "test" / truth).glob("*.jpeg"))[:4]]
    return found


def test_every_answer_has_its_request_id(live: TestClient, xray_bytes: bytes) -> None:
    single = post(live, xray_bytes)
    assert single.status_code == 200
    assert single.json()["request_id"] == single.headers["x-request-id"], "made here: the request's own id"
    batch = live.post(
        "/api/v1/predict",
        files=[
            ("files", ("a.jpeg", xray_bytes, "image/jpeg")),
            ("files", ("b.jpeg", xray_bytes, "image/jpeg")),
        ],
    )
    ids = [answer["request_id"] for answer in batch.json()]
    assert len(set(ids)) == 2 and batch.headers["x-request-id"] not in ids
    # A caller's own X-Request-ID may repeat: the record gets its own id, the header stays the caller's.
    first = post(live, xray_bytes, headers={"X-Request-ID": "client-7"})
    second = post(live, xray_bytes, headers={"X-Request-ID": "client-7"})
    assert first.headers["x-request-id"] == "client-7"
    assert len({first.json()["request_id"], second.json()["request_id"], "client-7"}) == 3
    for rid in [single.json()["request_id"], *ids, first.json()["request_id"], second.json()["request_id"]]:
        assert live.get(f"/api/v1/predictions/{rid}").status_code == 200


def test_the_record_is_the_answer(live: TestClient, xray_bytes: bytes) -> None:
    answer = post(live, xray_bytes, params={"operating_point": "sensitivity_95"}).json()
    found = live.get(f"/api/v1/predictions/{answer['request_id']}")
    assert found.status_code == 200
    record = found.json()
    assert record["label"] == answer["label"] and record["kind"] == "champion" and record["channel"] == "api"
    assert record["probabilities"]["PNEUMONIA"] == answer["probabilities"]["PNEUMONIA"]
    assert record["operating_point"] == {"name": "sensitivity_95", "threshold": answer["threshold"]}
    assert record["model"] == answer["model"]
    assert record["input"] == {
        "sha256": hashlib.sha256(xray_bytes).hexdigest(),
        "bytes": len(xray_bytes),
        "kept": False,
    }
    assert "xray.jpeg" not in found.text, "the client's file name is never recorded"
    pinned = post(live, xray_bytes, params={"version": "1"}).json()
    assert live.get(f"/api/v1/predictions/{pinned['request_id']}").json()["kind"] == "pinned"


def test_pages_and_explanations_are_recorded_too(live: TestClient, xray_bytes: bytes) -> None:
    page = live.post("/predict", files={"file": ("x.jpeg", xray_bytes, "image/jpeg")})
    assert page.status_code == 200
    rid = page.text.split('data-testid="request-id">')[1].split("<")[0]
    assert live.get(f"/api/v1/predictions/{rid}").json()["channel"] == "page"
    explained = live.post("/api/v1/explain", files={"file": ("x.jpeg", xray_bytes, "image/jpeg")})
    record = live.get(f"/api/v1/predictions/{explained.headers['x-prediction-request-id']}").json()
    assert record["channel"] == "explain" and record["label"] == explained.headers["x-predicted-label"]


def test_unknown_and_malformed_ids(live: TestClient) -> None:
    missing = live.get("/api/v1/predictions/0123456789abcdef")
    assert missing.status_code == 404 and "0123456789abcdef" in missing.json()["detail"]
    assert live.get("/api/v1/predictions/bad%20id%3Cscript%3E").status_code == 422


def test_feedback_is_idempotent_per_request_and_source(live: TestClient, xray_bytes: bytes) -> None:
    rid = post(live, xray_bytes).json()["request_id"]
    created = live.post("/api/v1/feedback", json={"request_id": rid, "label": "PNEUMONIA"})
    assert created.status_code == 201
    assert created.json() == {
        "label": "PNEUMONIA",
        "source": "unspecified",
        "labelled": [{"request_id": rid, "status": "created"}],
    }
    again = live.post("/api/v1/feedback", json={"request_id": rid, "label": "PNEUMONIA"})
    assert again.status_code == 200 and again.json()["labelled"][0]["status"] == "unchanged"
    corrected = live.post("/api/v1/feedback", json={"request_id": rid, "label": "NORMAL"})
    assert corrected.status_code == 200 and corrected.json()["labelled"][0]["status"] == "updated"
    other = live.post(
        "/api/v1/feedback", json={"request_id": rid, "label": "PNEUMONIA", "source": "radiology"}
    )
    assert other.status_code == 201
    assert len(live.get(f"/api/v1/predictions/{rid}").json()["feedback"]) == 2


def test_feedback_by_sha256(live: TestClient, fixture_data: Path) -> None:
    image = sorted((fixture_data / "train" / "NORMAL").glob("*.jpeg"))[0].read_bytes()
    ids = {post(live, image).json()["request_id"] for _ in range(2)}
    response = live.post(
        "/api/v1/feedback", json={"sha256": hashlib.sha256(image).hexdigest(), "label": "NORMAL"}
    )
    assert response.status_code == 201
    assert {item["request_id"] for item in response.json()["labelled"]} == ids


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"request_id": "0" * 32, "label": "NORMAL"}, 404),
        ({"sha256": "0" * 64, "label": "NORMAL"}, 404),
        ({"request_id": "x", "label": "normal"}, 422),
        ({"request_id": "x", "label": "COVID"}, 422),
        ({"request_id": "x"}, 422),
        ({"label": "NORMAL"}, 422),
        ({"request_id": "x", "sha256": "0" * 64, "label": "NORMAL"}, 422),
        ({"sha256": "not-hex", "label": "NORMAL"}, 422),
        ({"request_id": "x", "label": "NORMAL", "source": "s" * 65}, 422),
        ({"request_id": "x", "label": "NORMAL", "extra": 1}, 422),
        ({"request_id": "<script>", "label": "NORMAL"}, 422),
    ],
)
def test_bad_feedback_gets_one_clear_error(live: TestClient, body: dict, status: int) -> None:
    response = live.post("/api/v1/feedback", json=body)
    assert response.status_code == status
    assert set(response.json()) == {"detail"} and "Traceback" not in response.text


def test_feedback_that_is_not_json_is_refused(live: TestClient) -> None:
    response = live.post("/api/v1/feedback", content=b"label=NORMAL", headers={"content-type": "text/plain"})
    assert response.status_code == 422 and "detail" in response.json()


def test_the_monitor_counts_the_answers_against_the_labels(
    registered_store: str, tmp_path: Path, images: list[tuple[bytes, str]]
) -> None:
    """The acceptance check: the monitor's labelled, sensitivity and specificity are what the answers'
    labels give against the labels fed back."""
    for client in make_client(registered_store, audit_url=f"sqlite:///{tmp_path / 'audit.db'}"):
        pairs = []
        for content, truth in images:
            answer = post(client, content).json()
            assert (
                client.post(
                    "/api/v1/feedback", json={"request_id": answer["request_id"], "label": truth}
                ).status_code
                == 201
            )
            pairs.append((answer["label"], truth))
        post(client, images[0][0])  # answered, never labelled
        monitor = client.get("/api/v1/monitor")
        assert monitor.status_code == 200
        body = monitor.json()
        version = body["versions"][body["champion"]]
        tp = sum(a == t == "PNEUMONIA" for a, t in pairs)
        tn = sum(a == t == "NORMAL" for a, t in pairs)
        assert version["predictions"] == len(images) + 1 and version["labelled"] == len(images)
        assert version["sensitivity"] == pytest.approx(tp / 4, abs=1e-4)
        assert version["specificity"] == pytest.approx(tn / 4, abs=1e-4)
        assert version["drift"]["p_pneumonia"]["state"] in {"insufficient", "ok", "warn", "alert"}, (
            "trained here: it has a reference"
        )
        assert client.get("/api/v1/monitor", params={"window": "forever"}).status_code == 422
        assert client.get("/api/v1/monitor", params={"window": "all"}).json()["window"]["name"] == "all"
        page = client.get("/monitor", params={"window": "all"})
        assert (
            page.status_code == 200
            and page.text.count("<svg") >= 4
            and "<script" not in page.text.split("</main>")[0]
        )
        assert (
            client.get("/monitor", params={"window": "nope"}, headers={"accept": "text/html"}).status_code
            == 422
        )
        metrics = client.get("/metrics").text
        assert 'pneumonia_zoo_audit_records_total{outcome="committed"}' in metrics
        assert f'pneumonia_zoo_live_labelled{{version="{body["champion"]}"}} {float(len(images))}' in metrics


def test_the_api_key_guards_the_live_routes(registered_store: str, tmp_path: Path, xray_bytes: bytes) -> None:
    for client in make_client(registered_store, api_key=KEY, audit_url=f"sqlite:///{tmp_path / 'a.db'}"):
        rid = post(client, xray_bytes, headers={"X-API-Key": KEY}).json()["request_id"]
        calls = [
            ("POST", "/api/v1/feedback", {"request_id": rid, "label": "NORMAL"}),
            ("GET", f"/api/v1/predictions/{rid}", None),
            ("GET", "/api/v1/monitor", None),
        ]
        for method, path, body in calls:
            assert client.request(method, path, json=body).status_code == 401, path
            assert client.request(method, path, json=body, headers={"X-API-Key": "wrong"}).status_code == 401
            assert client.request(method, path, json=body, headers={"X-API-Key": KEY}).status_code in (
                200,
                201,
            )


def test_with_recording_off_answers_keep_their_id_and_lookups_say_why(
    registered_store: str, xray_bytes: bytes
) -> None:
    for client in make_client(registered_store, audit_url="off"):
        answer = post(client, xray_bytes)
        assert answer.status_code == 200 and answer.json()["request_id"]
        for response in (
            client.get(f"/api/v1/predictions/{answer.json()['request_id']}"),
            client.post(
                "/api/v1/feedback", json={"request_id": answer.json()["request_id"], "label": "NORMAL"}
            ),
            client.get("/api/v1/monitor"),
        ):
            assert response.status_code == 404 and "recording is off" in response.json()["detail"]
        assert "Recording is off" in client.get("/monitor").text


@pytest.mark.parametrize(("policy", "status"), [("serve", 200), ("refuse", 503)])
def test_a_database_that_fails_follows_the_policy(
    registered_store: str, tmp_path: Path, xray_bytes: bytes, policy: str, status: int
) -> None:
    (tmp_path / "audit.db").mkdir()  # a folder where the database file should be: every write fails
    settings = {"audit_url": f"sqlite:///{tmp_path / 'audit.db'}", "audit_on_error": policy}
    for client in make_client(registered_store, raise_server_exceptions=False, **settings):
        answer = post(client, xray_bytes)
        assert answer.status_code == status, answer.text
        metrics = client.get("/metrics").text
        if policy == "serve":
            assert (
                answer.json()["request_id"] and "pneumonia_zoo_audit_unrecorded_answers_total 1.0" in metrics
            )
        else:
            assert "could not be recorded" in answer.json()["detail"]
            assert "pneumonia_zoo_audit_refused_answers_total 1.0" in metrics
        assert 'pneumonia_zoo_audit_records_total{outcome="failed"} 1.0' in metrics
        for lookup in (client.get("/api/v1/monitor"), client.get("/api/v1/predictions/abc")):
            assert lookup.status_code == 503 and "audit database could not be read" in lookup.json()["detail"]
