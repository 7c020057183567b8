"""Owners, keys, idempotent submissions, upload limits and cancellation, over HTTP on
PostgreSQL and Redis."""

from __future__ import annotations

import io

import pytest

from tests.conftest import make_key

pytestmark = pytest.mark.infra

CSV = b"a,b,y1,y2\n" + b"".join(
    f"{i},{i % 7},{int(i % 5 == 0)},{int(i % 2 == 0)}\n".encode() for i in range(40)
)


def upload(client, content: bytes = CSV, headers: dict | None = None):
    return client.post(
        "/v1/datasets",
        data={"label_columns": "y1,y2"},
        files={"file": ("d.csv", io.BytesIO(content), "text/csv")},
        headers=headers or {},
    )


def test_no_key_is_401_and_names_the_fix(api_client):
    response = api_client.get("/v1/datasets/ds_x", headers={"Authorization": ""})
    assert response.status_code == 401
    assert response.json()["code"] == "auth.missing_key"
    assert "labelwise keys create" in response.json()["message"]
    bad = api_client.get(
        "/v1/datasets/ds_x", headers={"Authorization": "Bearer lw_nope"}
    )
    assert bad.status_code == 401 and bad.json()["code"] == "auth.invalid_key"


def test_another_owner_gets_404_for_everything(api_client):
    dataset = upload(api_client).json()
    job = api_client.post("/v1/jobs", json={"dataset_id": dataset["id"]}).json()
    stranger = {"Authorization": f"Bearer {make_key('stranger')}"}
    for path in (
        f"/v1/datasets/{dataset['id']}",
        f"/v1/datasets/{dataset['id']}/profile",
        f"/v1/jobs/{job['id']}",
        f"/v1/jobs/{job['id']}/history",
    ):
        assert api_client.get(path, headers=stranger).status_code == 404, path
    response = api_client.post(
        "/v1/jobs", json={"dataset_id": dataset["id"]}, headers=stranger
    )
    assert response.status_code == 404
    cancel = api_client.post(f"/v1/jobs/{job['id']}/cancel", headers=stranger)
    assert cancel.status_code == 404


def test_idempotent_dataset_upload_returns_the_first_result(api_client):
    key = {"Idempotency-Key": "upload-1"}
    first = upload(api_client, headers=key)
    again = upload(api_client, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    other = upload(api_client, CSV + b"99,1,1,1\n", headers=key)
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency.key_reused"


def test_idempotent_job_submission_creates_one_job(api_client):
    dataset = upload(api_client).json()
    body = {"dataset_id": dataset["id"], "config": {"train": {"epochs": 1}}}
    key = {"Idempotency-Key": "job-1"}
    first = api_client.post("/v1/jobs", json=body, headers=key)
    again = api_client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    changed = api_client.post(
        "/v1/jobs", json={**body, "config": {"train": {"epochs": 2}}}, headers=key
    )
    assert changed.status_code == 409


def test_upload_over_the_limit_is_413_and_stores_nothing(api_client, monkeypatch):
    from service.settings import get_settings

    monkeypatch.setattr(get_settings(), "max_upload_mb", 0.001)  # 1,048 bytes
    big = b"a,y\n" + b"1,0\n" * 2000
    response = upload(api_client, big)
    assert response.status_code == 413
    assert response.json()["code"] == "upload.too_large"
    assert list(get_settings().data_dir.joinpath("uploads").iterdir()) == []


def test_cancel_a_queued_job_and_refuse_a_second_cancel(api_client):
    dataset = upload(api_client).json()
    job = api_client.post("/v1/jobs", json={"dataset_id": dataset["id"]}).json()
    cancelled = api_client.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = api_client.post(f"/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["code"] == "job.not_cancellable"


def test_profile_is_served(api_client):
    dataset = upload(api_client).json()
    profile = api_client.get(f"/v1/datasets/{dataset['id']}/profile").json()
    assert profile["rows"] == 40 and profile["n_labels"] == 2
    assert [row["positives"] for row in profile["labels"]] == [8, 20]
