"""Without PNEUMONIA_ZOO_ADMIN_TOKEN the admin endpoint is off, whatever token is sent."""

import pytest

from tests.serving.conftest import make_client


@pytest.fixture(scope="module")
def client_without_token(registered_store):
    yield from make_client(registered_store, admin_token=None)


def test_admin_reload_disabled_without_a_token(client_without_token):
    response = client_without_token.post("/api/v1/admin/reload", headers={"Authorization": "Bearer x"})
    assert response.status_code == 403
    assert "disabled" in response.json()["detail"]
