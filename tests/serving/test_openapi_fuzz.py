"""schemathesis against the app's own OpenAPI document, in process (ASGI): whatever the generated
request, no 5xx, every status code is documented, every body matches its documented schema.

Bounded and derandomized, so it is the same few requests on every run (well under a minute).
"""

import tempfile
import time
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pneumonia_zoo.config import Settings
from pneumonia_zoo.serving import create_app
from pneumonia_zoo.serving.holder import STARTING
from pneumonia_zoo.tracking.store import Store
from tests.serving.conftest import TEST_LIMITS

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Built at import, as @schema.parametrize needs the operations at collection time (schemathesis's
# lazy from_fixture does not work with this pytest). Nothing runs until the fixture starts its lifespan.
# The audit folder is removed when the test process exits (no fixture exists yet at import).
AUDIT_DIR = tempfile.TemporaryDirectory(prefix="pneumonia-zoo-fuzz-")
SETTINGS = TEST_LIMITS | {
    "reload_interval_s": 0,
    "admin_token": "fuzz-token",
    # Its records in a folder of its own, not beside the default store in the working folder.
    "audit_url": f"sqlite:///{AUDIT_DIR.name}/audit.db",
}
APP: FastAPI = create_app(Settings(**SETTINGS))
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP  # in process: schemathesis's ASGI transport, which starts the app's lifespan once


@pytest.fixture(scope="module")
def serving(registered_store: str) -> Iterator[None]:
    """The session's champion loaded before the first case, so the fuzzing meets a serving app.

    schemathesis ends the app's lifespan after every test and the next request starts it again; the
    model holder keeps the loaded champion across lifespans.
    """
    # The app had to exist at import (for parametrize), before the session's store did: give it that store
    # now, where create_app put the one its settings named.
    store = Store(Settings(**SETTINGS, tracking_uri=registered_store))
    APP.state.store = APP.state.holder.store = store
    with asgi.get_client(APP) as client:  # starts the lifespan: the model loads in the background
        deadline = time.monotonic() + 120
        while client.get("/readyz").json().get("status") == STARTING and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/readyz").status_code == 200
    yield


@schema.parametrize()
@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_documented_operation_honours_its_schema(serving: None, case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
