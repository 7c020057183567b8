"""A small HTTP client for labelwise, used by `labelwise demo`, tests and benchmarks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Client:
    def __init__(
        self, base_url: str, api_key: str | None = None, timeout: float = 60
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ApiError(response.status_code, body)
        return response.json()

    def health(self) -> dict:
        return self._json(self.http.get("/health"))

    def upload_dataset(
        self, path: Path, label_columns: list[str], name: str | None = None
    ) -> dict:
        data = {"label_columns": ",".join(label_columns)}
        if name:
            data["name"] = name
        with open(path, "rb") as handle:
            files = {"file": (Path(path).name, handle, "application/octet-stream")}
            return self._json(self.http.post("/v1/datasets", data=data, files=files))

    def create_job(
        self,
        dataset_id: str,
        config: dict | None = None,
        test_dataset_id: str | None = None,
    ) -> dict:
        body: dict[str, Any] = {"dataset_id": dataset_id}
        if config is not None:
            body["config"] = config
        if test_dataset_id:
            body["test_dataset_id"] = test_dataset_id
        return self._json(self.http.post("/v1/jobs", json=body))

    def create_job_raw(self, body: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self.http.post("/v1/jobs", json=body, headers=headers))

    def job(self, job_id: str) -> dict:
        return self._json(self.http.get(f"/v1/jobs/{job_id}"))

    def wait(
        self, job_id: str, timeout: float = 600, poll: float = 0.25, on_poll=None
    ) -> dict:
        """Poll until the job is final; returns the last job body."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_poll:
                on_poll(job)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} still {job['status']} after {timeout}s"
                )
            time.sleep(poll)

    def candidates(self, job_id: str) -> dict:
        return self._json(self.http.get(f"/v1/jobs/{job_id}/candidates"))

    def history(self, job_id: str) -> dict:
        return self._json(self.http.get(f"/v1/jobs/{job_id}/history"))

    def metrics(self, job_id: str, split: str = "validation") -> dict:
        return self._json(
            self.http.get(f"/v1/jobs/{job_id}/metrics", params={"split": split})
        )

    def predict_rows(self, model_id: str, rows: list[dict]) -> dict:
        return self._json(
            self.http.post(f"/v1/models/{model_id}/predict", json={"rows": rows})
        )

    def predict_file(self, model_id: str, path: Path) -> dict:
        with open(path, "rb") as handle:
            files = {"file": (Path(path).name, handle, "application/octet-stream")}
            return self._json(
                self.http.post(f"/v1/models/{model_id}/predict", files=files)
            )
