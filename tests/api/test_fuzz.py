"""Fuzz every operation from the OpenAPI schema: whatever is sent, never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

pytestmark = pytest.mark.infra


@pytest.fixture
def api_schema(api_client):
    return schemathesis.openapi.from_asgi("/openapi.json", api_client.app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case, api_client):
    response = case.call(headers={"Authorization": api_client.headers["Authorization"]})
    assert response.status_code < 500, (case.method, case.path, response.text)
