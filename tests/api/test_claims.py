"""The job claim on real PostgreSQL: one delivery runs a job, the reaper hands expired
claims on, attempts are bounded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.db import session_scope, utcnow
from service.jobs.tables import Job, JobStatus

pytestmark = pytest.mark.infra


@pytest.fixture
def queued_job(api_client) -> str:
    import io

    content = b"a,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(20))
    dataset = api_client.post(
        "/v1/datasets",
        data={"label_columns": "y"},
        files={"file": ("d.csv", io.BytesIO(content), "text/csv")},
    ).json()
    return api_client.post("/v1/jobs", json={"dataset_id": dataset["id"]}).json()["id"]


def test_second_delivery_finds_the_claim_and_does_nothing(queued_job):
    from service.settings import get_settings
    from workers.runner import claim

    first = claim(queued_job, "w1:1", get_settings())
    second = claim(queued_job, "w2:2", get_settings())
    assert first is not None and first.number == 1
    assert second is None
    with session_scope() as session:
        job = session.get(Job, queued_job)
        assert (job.status, job.lease_owner, job.attempts) == ("running", "w1:1", 1)


def test_a_stale_attempt_cannot_write(queued_job):
    from service.settings import get_settings
    from workers.reaper import reap
    from workers.runner import LeaseLost, claim, fence

    settings = get_settings()
    stale = claim(queued_job, "w1:1", settings)
    with session_scope() as session:
        session.get(Job, queued_job).lease_expires_at = utcnow() - timedelta(seconds=1)
    sent: list[str] = []
    assert reap(settings, sent.append)["requeued"] == 1
    assert sent == [queued_job]

    fresh = claim(queued_job, "w2:2", settings)
    assert fresh.number == 2
    with pytest.raises(LeaseLost), session_scope() as session:
        fence(session, stale, progress_epoch=99)
    with session_scope() as session:
        assert session.get(Job, queued_job).progress_epoch == 0


def test_a_job_that_always_crashes_ends_failed(queued_job):
    from service.settings import get_settings
    from workers.reaper import reap
    from workers.runner import claim

    settings = get_settings()
    for number in range(1, settings.max_attempts + 1):
        assert claim(queued_job, f"w:{number}", settings).number == number
        with session_scope() as session:
            session.get(Job, queued_job).lease_expires_at = utcnow() - timedelta(
                seconds=1
            )
        reap(settings, lambda _job_id: None)
    with session_scope() as session:
        job = session.get(Job, queued_job)
        assert job.status == JobStatus.FAILED
        assert job.error_code == "worker_lost"
        assert job.attempts == settings.max_attempts
