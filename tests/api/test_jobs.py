"""`POST /v1/jobs` validation and reads, through HTTP on PostgreSQL and Redis."""

from __future__ import annotations

import io

import pytest

pytestmark = pytest.mark.infra


@pytest.fixture
def dataset_id(api_client) -> str:
    rows = "\n".join(
        f"{i},{i % 7},{int(i % 5 == 0)},{int(i % 2 == 0)}" for i in range(40)
    )
    content = f"a,b,y1,y2\n{rows}\n".encode()
    response = api_client.post(
        "/v1/datasets",
        data={"label_columns": "y1,y2"},
        files={"file": ("d.csv", io.BytesIO(content), "text/csv")},
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_config_may_be_omitted(api_client, dataset_id):
    response = api_client.post("/v1/jobs", json={"dataset_id": dataset_id})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["attempts"] == 0
    assert body["config"]["imbalance"] == "auto"
    assert body["config"]["data"]["validation_fraction"] == 0.2
    read = api_client.get(f"/v1/jobs/{body['id']}").json()
    assert read["id"] == body["id"]
    # auto trains six candidate strategies: progress counts all their epochs.
    assert read["progress"]["epochs"] == 6 * body["config"]["train"]["epochs"]


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"train": {"lr": -1}}, "config.train.lr"),
        ({"train": {"learning_rate": 0.1}}, "config.train.learning_rate"),
        ({"model": {"type": "transformer"}}, "config.model"),
        (
            {"imbalance": {"thresholds": {"mode": "fixed", "value": 2}}},
            "config.imbalance.thresholds.value",
        ),
        (
            {"imbalance": {"loss": {"type": "focal", "gamma": -1}}},
            "config.imbalance.loss.gamma",
        ),
        (
            {"train": {"schedule": {"type": "cosine", "warmup": 2}}},
            "config.train.schedule.warmup",
        ),
        ({"data": {"validation_fraction": 1.5}}, "config.data.validation_fraction"),
    ],
)
def test_invalid_config_names_the_field(api_client, dataset_id, config, field):
    response = api_client.post(
        "/v1/jobs", json={"dataset_id": dataset_id, "config": config}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "request.invalid"
    assert f"'{field}'" in body["message"]


def test_unknown_dataset_is_named(api_client):
    response = api_client.post("/v1/jobs", json={"dataset_id": "ds_missing"})
    assert response.status_code == 404
    assert response.json()["message"] == "No dataset with dataset_id 'ds_missing'."


def test_metrics_before_success_are_404(api_client, dataset_id):
    job = api_client.post("/v1/jobs", json={"dataset_id": dataset_id}).json()
    response = api_client.get(f"/v1/jobs/{job['id']}/metrics")
    assert response.status_code == 404
    assert response.json()["code"] == "metrics.not_ready"
    assert (
        api_client.get(f"/v1/jobs/{job['id']}/metrics?split=train").status_code == 422
    )


def test_config_schema_is_published(api_client):
    schema = api_client.get("/v1/config/schema").json()
    assert set(schema["properties"]) == {"model", "train", "data", "imbalance"}
    openapi = api_client.get("/openapi.json").json()
    assert "/v1/models/{model_id}/predict" in openapi["paths"]


def test_health(api_client):
    assert api_client.get("/health").json() == {"status": "ok"}
