"""The JSON API against the session's champion, through TestClient (lifespan included)."""

import io
import math

from PIL import Image


def post(client, path, content: bytes, name="xray.jpeg", field="file", **params):
    return client.post(path, files={field: (name, content, "image/jpeg")}, params=params)


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model"] == {
        "name": "pneumonia-classifier",
        "version": "1",
        "architecture": "small_cnn",
        "runtime": "onnx",
    }
    # Every response carries a request id: the caller's (when harmless) or a new one.
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id <script>"}).headers["x-request-id"]
    assert len(made) == 32 and made.isalnum()


def test_predict_single(client, xray_bytes):
    response = post(client, "/api/v1/predict", xray_bytes)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "request_id",
        "label",
        "probabilities",
        "threshold",
        "operating_point",
        "uncertain",
        "out_of_population",
        "model",
        "latency_ms",
        "filename",
    }
    assert (
        body["operating_point"]["name"] == "balanced"
        and body["operating_point"]["threshold"] == body["threshold"]
    )
    assert set(body["out_of_population"]) == {"flagged", "score", "reasons", "warning"}
    assert body["uncertain"] == (abs(body["probabilities"]["PNEUMONIA"] - body["threshold"]) < 0.1)
    assert set(body["probabilities"]) == {"NORMAL", "PNEUMONIA"}
    assert math.isclose(sum(body["probabilities"].values()), 1.0, abs_tol=1e-5)
    expected = "PNEUMONIA" if body["probabilities"]["PNEUMONIA"] >= body["threshold"] else "NORMAL"
    assert body["label"] == expected
    assert body["model"]["version"] == "1" and body["model"]["architecture"] == "small_cnn"
    assert body["latency_ms"] >= 0 and body["filename"] == "xray.jpeg"


def test_predict_batch_answers_a_list_in_order(client, xray_bytes, fixture_data):
    normal = next((fixture_data / "test" / "NORMAL").glob("*.jpeg")).read_bytes()
    files = [
        ("files", ("a.jpeg", xray_bytes, "image/jpeg")),
        ("files", ("b.jpeg", normal, "image/jpeg")),
        ("files", ("c.jpeg", xray_bytes, "image/jpeg")),
    ]
    response = client.post("/api/v1/predict", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["filename"] for item in body] == ["a.jpeg", "b.jpeg", "c.jpeg"]
    assert body[0]["probabilities"] == body[2]["probabilities"]  # same image, same answer in one batch
    single = post(client, "/api/v1/predict", normal).json()
    assert all(
        math.isclose(single["probabilities"][k], body[1]["probabilities"][k], abs_tol=1e-5)
        for k in ("NORMAL", "PNEUMONIA")
    )


def test_operating_point_parameter(client, xray_bytes):
    body = post(client, "/api/v1/predict", xray_bytes, operating_point="sensitivity_95").json()
    assert body["operating_point"]["name"] == "sensitivity_95"
    default = post(client, "/api/v1/predict", xray_bytes).json()
    assert body["probabilities"] == default["probabilities"]  # the point moves the threshold, nothing else
    expected = "PNEUMONIA" if body["probabilities"]["PNEUMONIA"] >= body["threshold"] else "NORMAL"
    assert body["label"] == expected
    unknown = post(client, "/api/v1/predict", xray_bytes, operating_point="optimistic")
    assert unknown.status_code == 422 and "unknown operating point 'optimistic'" in unknown.json()["detail"]


def test_version_parameter(client, xray_bytes):
    assert post(client, "/api/v1/predict", xray_bytes, version="1").json()["model"]["version"] == "1"
    unknown = post(client, "/api/v1/predict", xray_bytes, version="99")
    assert unknown.status_code == 404
    assert "version 99" in unknown.json()["detail"]
    garbage = post(client, "/api/v1/predict", xray_bytes, version="latest; drop")
    assert garbage.status_code == 422 and "version" in garbage.json()["detail"]


def test_explain_returns_a_png_overlay(client, xray_bytes):
    response = post(client, "/api/v1/explain", xray_bytes)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-predicted-label"] in ("NORMAL", "PNEUMONIA")
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.format == "PNG" and overlay.mode == "RGB"
    assert max(overlay.size) == 512  # the display size, with the X-ray's aspect ratio kept
    assert abs(overlay.size[0] / overlay.size[1] - 1088 / 576) < 0.02
    assert response.headers["x-explained-by"] == "small_cnn"
    batch = client.post("/api/v1/explain", files=[("files", ("a.jpeg", xray_bytes, "image/jpeg"))])
    assert batch.status_code == 422 and "one image" in batch.json()["detail"]


def test_openapi_documents_only_the_fields_each_upload_route_takes(client):
    paths = client.get("/openapi.json").json()["paths"]

    def fields(path):
        body = paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        return set(body["properties"])

    assert fields("/api/v1/predict") == {"file", "files"} and fields("/api/v1/explain") == {"file"}


def test_model_card_of_a_version(client):
    response = client.get("/api/v1/models/1/card")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/markdown")
    assert "# Model card: pneumonia-classifier version 1" in response.text
    assert "not a diagnostic device" in response.text and "## Operating points" in response.text
    assert client.get("/api/v1/models/99/card").status_code == 404
    assert client.get("/api/v1/models/abc/card").status_code == 422


def test_models_lists_versions_and_champion(client):
    body = client.get("/api/v1/models").json()
    assert body["champion_alias"] == "champion" and body["serving"]["version"] == "1"
    (version,) = body["versions"]
    assert version["champion"] is True and version["architecture"] == "small_cnn"
    assert version["image_size"] == 32 and version["onnx"] is True
    assert {"val_auc", "test_auc", "test_sensitivity", "test_specificity"} <= set(version["metrics"])
    assert version["mlflow_url"].startswith("http://127.0.0.1:5000/#/models/pneumonia-classifier/versions/1")
    assert version["card_url"] == "/api/v1/models/1/card" and version["kind"] == "single"


def test_metrics_exposes_requests_batches_and_model(client, xray_bytes):
    post(client, "/api/v1/predict", xray_bytes)
    text = client.get("/metrics").text
    assert 'pneumonia_zoo_http_requests_total{method="POST",route="/api/v1/predict",status="200"}' in text
    assert "pneumonia_zoo_http_request_duration_seconds_bucket" in text
    assert "pneumonia_zoo_inference_batch_size_count" in text
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "pneumonia_zoo_inference_seconds_count",
        "pneumonia_zoo_queue_wait_seconds_count",
        "pneumonia_zoo_queue_depth",
        'pneumonia_zoo_budget_bytes_in_use{budget="pixels"}',
        'pneumonia_zoo_budget_bytes_in_use{budget="uploads"}',
    ):
        assert name in text, name
    assert 'pneumonia_zoo_predictions_total{label="' in text and 'version="1"' in text
    assert (
        'pneumonia_zoo_model_loaded{architecture="small_cnn",name="pneumonia-classifier",'
        'runtime="onnx",version="1"} 1.0'
    ) in text


def test_admin_reload_needs_the_token(client):
    assert client.post("/api/v1/admin/reload").status_code == 401
    wrong = client.post("/api/v1/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"]
    ok = client.post("/api/v1/admin/reload", headers={"Authorization": "Bearer let-me-in"})
    assert ok.status_code == 200
    assert ok.json() == {"changed": False, "model": ok.json()["model"], "error": None}
    assert ok.json()["model"]["version"] == "1"


def test_openapi_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/api/v1/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"404", "413", "422", "503"} <= set(predict["responses"])
    assert schema["components"]["schemas"]["Prediction"]["examples"][0]["label"] == "PNEUMONIA"
    assert "/api/v1/explain" in schema["paths"] and "/api/v1/models" in schema["paths"]
    assert client.get("/docs").status_code == 200
