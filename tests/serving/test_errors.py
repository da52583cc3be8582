"""The one table from domain errors to HTTP answers, and its handler in a real app (JSON or the page)."""

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import pneumonia_zoo
from pneumonia_zoo.config import Settings
from pneumonia_zoo.data.errors import ImageDecodeError, ImageTooLargeError
from pneumonia_zoo.errors import (
    AtCapacity,
    ClientTimeout,
    DeadlineExceeded,
    InvalidInput,
    MalformedRequest,
    MissingWeightsError,
    NeedsTorch,
    NotFound,
    NotReady,
    PackageRejected,
    RegistryUnavailable,
    TooLarge,
    Unavailable,
    Unsupported,
    UnsupportedMediaType,
    UserError,
    ZooError,
)
from pneumonia_zoo.package.format import PackageError
from pneumonia_zoo.serving import create_app
from pneumonia_zoo.serving.admission import Overloaded
from pneumonia_zoo.serving.batcher import QueueFull
from pneumonia_zoo.serving.errors import ANSWERS, http_error
from pneumonia_zoo.serving.holder import VersionNotFound

RETRY = {"Retry-After": "1"}

# (error, status, headers): every listed type, and subclasses that must inherit their ancestor's answer.
CASES: list[tuple[ZooError, int, dict[str, str]]] = [
    (MalformedRequest("malformed multipart body"), 400, {}),
    (NotFound("no such sample"), 404, {}),
    (VersionNotFound("version 9 is not in the registry"), 404, {}),
    (ClientTimeout("the upload did not arrive"), 408, {"Connection": "close"}),
    (TooLarge("too many files"), 413, {}),
    (ImageTooLargeError("too many pixels"), 413, {}),  # a TooLarge before it is an InvalidInput
    (UnsupportedMediaType("send multipart/form-data"), 415, {}),
    (InvalidInput("version must be a number"), 422, {}),
    (ImageDecodeError("not an image"), 422, {}),
    (UserError("unknown operating point"), 422, {}),
    (MissingWeightsError("no weights"), 422, {}),
    (PackageRejected("version 2 could not be loaded"), 503, {}),
    (PackageError("sha256 mismatch"), 503, {}),
    (NeedsTorch("it has no ONNX export, and this installation has no PyTorch"), 503, {}),
    (Unsupported("no heatmap: Grad-CAM of vgg16 needs PyTorch"), 501, {}),
    (AtCapacity(), 503, RETRY),
    (AtCapacity(retry_after_s=7), 503, {"Retry-After": "7"}),
    (QueueFull(), 503, RETRY),
    (Overloaded(), 503, RETRY),
    (DeadlineExceeded("too slow"), 504, RETRY),  # the configured timeout status (504 by default)
    (RegistryUnavailable("the registry could not be read"), 503, {}),
    (NotReady("the champion model is loading"), 503, {}),
    (Unavailable("version 2 could not be loaded (OSError)"), 503, {}),
]


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    CASES,
    ids=[f"{type(error).__name__}-{status}" for error, status, _ in CASES],
)
def test_each_domain_error_has_its_status_and_headers(error: ZooError, status: int, headers: dict) -> None:
    answer = http_error(error, timeout_status=504)
    assert answer is not None
    assert (answer.status, answer.detail, answer.headers) == (status, str(error), headers)


def test_the_deadline_answers_with_the_configured_status() -> None:
    for configured in (503, 504):
        answer = http_error(DeadlineExceeded("too slow"), timeout_status=configured)
        assert answer is not None and (answer.status, answer.headers) == (configured, RETRY)
    capacity = http_error(AtCapacity(), timeout_status=504)
    assert capacity is not None and capacity.status == 503  # only the deadline follows the setting


def test_a_bare_zoo_error_is_not_in_the_table() -> None:
    """Nothing says what it is: the app answers it as an unexpected error (a 500)."""
    assert http_error(ZooError("something"), timeout_status=504) is None


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_domain_error_of_the_package_has_an_answer() -> None:
    """A new error type anywhere in pneumonia_zoo is answered by its own entry or an ancestor's."""
    for module in pkgutil.walk_packages(pneumonia_zoo.__path__, "pneumonia_zoo."):
        if module.name.startswith(("pneumonia_zoo.serving", "pneumonia_zoo.package", "pneumonia_zoo.data")):
            importlib.import_module(module.name)  # the layers whose errors reach the service
    found = [cls for cls in _subclasses(ZooError) if cls.__module__.startswith("pneumonia_zoo")]
    assert {VersionNotFound, QueueFull, Overloaded, PackageError, ImageTooLargeError} <= set(found)
    for cls in found:
        assert any(ancestor in ANSWERS for ancestor in cls.__mro__), cls
    assert {type(error) for error, _, _ in CASES} >= set(ANSWERS)  # every entry is checked above


# -- through a real app: the real handler renders JSON for machines and the error page for people --------


RAISERS: dict[str, Callable[[], ZooError]] = {
    "too-large": lambda: ImageTooLargeError("'x.png': the image has too many pixels"),
    "stalled": lambda: ClientTimeout("the upload did not arrive within 30 s"),
    "full": lambda: AtCapacity(retry_after_s=3),
    "slow": lambda: DeadlineExceeded("the request took longer than the service's deadline"),
    "gone": lambda: PackageRejected("version 2 could not be loaded: its artifacts are missing"),
    "bare": lambda: ZooError("no entry says what this is"),
}


def _app_client(tmp_path: Path, **settings) -> TestClient:
    """The real app (no lifespan: no model is needed) with routes that raise each error."""
    app = create_app(Settings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", **settings))

    async def raise_it(kind: str) -> None:
        raise RAISERS[kind]()

    for path in ("/api/v1/raise/{kind}", "/predict/raise/{kind}", "/raise/{kind}"):
        app.add_api_route(path, raise_it)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def raising(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return _app_client(tmp_path_factory.mktemp("errors"))


@pytest.mark.parametrize(
    ("kind", "status", "headers"),
    [
        ("too-large", 413, {}),
        ("stalled", 408, {"connection": "close"}),
        ("full", 503, {"retry-after": "3"}),
        ("slow", 504, {"retry-after": "1"}),
        ("gone", 503, {}),
    ],
)
def test_the_api_answers_json_with_the_tables_status(raising, kind, status, headers) -> None:
    response = raising.get(f"/api/v1/raise/{kind}")
    assert response.status_code == status
    assert response.json() == {"detail": str(RAISERS[kind]())}
    assert headers.items() <= response.headers.items()
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # the security headers as well
    if "retry-after" not in headers:
        assert "retry-after" not in response.headers


@pytest.mark.parametrize(
    ("path", "accept"),
    [("/predict/raise/{kind}", "*/*"), ("/raise/{kind}", "text/html,application/xhtml+xml")],
)
def test_pages_answer_the_error_page_with_the_same_status_and_headers(raising, path, accept) -> None:
    page = raising.get(path.format(kind="full"), headers={"accept": accept})
    assert page.status_code == 503 and page.headers["retry-after"] == "3"
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>No model available</h1>" in page.text and "The service is at capacity" in page.text
    assert "Error 503." in page.text

    too_large = raising.get(path.format(kind="too-large"), headers={"accept": accept})
    assert too_large.status_code == 413 and "text/html" in too_large.headers["content-type"]
    assert "the image has too many pixels" in too_large.text and "Error 413." in too_large.text


def test_without_html_in_accept_a_neutral_path_answers_json(raising) -> None:
    response = raising.get("/raise/gone", headers={"accept": "application/json"})
    assert response.status_code == 503 and response.json()["detail"].startswith("version 2 could not")


def test_the_deadline_status_comes_from_the_settings(tmp_path: Path) -> None:
    client = _app_client(tmp_path, timeout_status=503)
    response = client.get("/api/v1/raise/slow")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"


def test_an_unknown_zoo_error_is_an_internal_error_without_its_text(raising) -> None:
    response = raising.get("/api/v1/raise/bare")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error: the service could not handle this request"}
