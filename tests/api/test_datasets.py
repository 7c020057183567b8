"""`POST /v1/datasets` and `GET /v1/datasets/{id}` through HTTP, on PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import DATASETS, dataset_meta

pytestmark = pytest.mark.infra


def upload(client, content: bytes, labels: str, name: str | None = None):
    data = {"label_columns": labels}
    if name:
        data["name"] = name
    files = {"file": ("upload.csv", io.BytesIO(content), "text/csv")}
    return client.post("/v1/datasets", data=data, files=files)


def stored_state(data_dir: Path) -> tuple[int, list[str]]:
    from service.datasets.tables import Dataset
    from service.db import session_scope

    with session_scope() as session:
        count = session.scalar(select(func.count()).select_from(Dataset))
    root = data_dir / "datasets"
    files = sorted(str(p) for p in root.rglob("*")) if root.exists() else []
    return count, files


def test_upload_yeast_reports_shape_and_positives(api_client):
    meta = dataset_meta("yeast")
    content = (DATASETS / "yeast" / "train.csv").read_bytes()
    response = upload(api_client, content, ",".join(meta["labels"]), name="yeast")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["rows"] == 1500
    assert body["name"] == "yeast"
    assert len(body["features"]) == 103 and body["features"][0] == "Att1"
    assert body["labels"] == meta["labels"]
    assert list(body["positives"].values()) == meta["label_counts_train"]

    again = api_client.get(f"/v1/datasets/{body['id']}")
    assert again.status_code == 200 and again.json() == body


@pytest.mark.parametrize(
    ("content", "labels", "code", "named"),
    [
        (b"a,b,y\n1,2,0\n", "z", "dataset.label_column_missing", "'z'"),
        (
            b"a,b,y\n1,2,0\n3,4,2\n",
            "y",
            "dataset.invalid_label_value",
            "value 2 at row 2 (line 3)",
        ),
        (b"a,b,y\n1,x,0\n", "y", "dataset.non_numeric_feature", "'x'"),
        (b"", "y", "dataset.empty_file", None),
        (b"a,b,y\n", "y", "dataset.empty_file", None),
        (b"a,a,y\n1,2,0\n", "y", "dataset.duplicate_column", "'a'"),
        (
            b"a,b,y\n1,2,0\n1,2\n",
            "y",
            "dataset.ragged_row",
            "Line 3 has 2 fields but the header has 3",
        ),
        (b"a,b,y\n1,2,0\n", " , ", "dataset.no_label_columns", "label_columns"),
    ],
)
def test_bad_upload_is_refused_and_nothing_is_stored(
    api_client, content, labels, code, named
):
    from service.settings import get_settings

    before = stored_state(get_settings().data_dir)
    response = upload(api_client, content, labels)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["code"] == code
    assert body["message"].endswith(".")
    if named:
        assert named in body["message"]
    assert stored_state(get_settings().data_dir) == before


def test_missing_form_field_names_it(api_client):
    response = api_client.post(
        "/v1/datasets", files={"file": ("x.csv", io.BytesIO(b"a,y\n1,0\n"), "text/csv")}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "request.invalid"
    assert "label_columns" in response.json()["message"]


def test_unknown_dataset_is_404(api_client):
    response = api_client.get("/v1/datasets/ds_nope")
    assert response.status_code == 404
    assert response.json() == {
        "code": "dataset.not_found",
        "message": "No dataset with id 'ds_nope'.",
    }
