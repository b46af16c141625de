"""Survey jobs seen from another API worker sharing the home: two SurveyJobs over one folder stand for two
worker processes (the real thing: tests/integration/test_multiworker.py)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from twinchat import jobs as jobs_module
from twinchat.domain.control import LOCAL_RESEARCH
from twinchat.domain.survey import Question
from twinchat.jobs import JobNotFound, SurveyJobs


class StepSurvey:
    """A service whose survey gives one answer each time the test lets it; every twin exists."""

    def __init__(self) -> None:
        self.go = threading.Semaphore(0)
        self.registry = self

    def get(self, twin_id: str) -> object:
        return object()

    def survey(
        self, questions: list[Question], twin_ids: list[str], *, use: Any, refused: list[str]
    ) -> Iterator[dict[str, Any]]:
        for twin_id in twin_ids:
            for question in questions:
                assert self.go.acquire(timeout=30), "the test never let the survey go on"
                yield {"twin_id": twin_id, "question_id": question.id, "answer": "yes"}


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"waited 30 s for {what}"
        time.sleep(0.01)


@pytest.fixture
def workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SurveyJobs, SurveyJobs, StepSurvey]]:
    monkeypatch.setattr(jobs_module, "PROGRESS_EVERY_S", 0.0)
    service = StepSurvey()
    a = SurveyJobs(service, tmp_path / "jobs")  # type: ignore[arg-type]
    b = SurveyJobs(service, tmp_path / "jobs")  # type: ignore[arg-type]
    yield a, b, service
    service.go.release(100)
    a.close()
    b.close()


QUESTIONS = [Question("q1", "Tea or coffee?", ("tea", "coffee"))]


def test_a_job_running_in_one_worker_is_polled_and_downloaded_from_another(
    workers: tuple[SurveyJobs, SurveyJobs, StepSurvey],
) -> None:
    a, b, service = workers
    job = a.submit(QUESTIONS, ["ann", "bob", "cy"], use=LOCAL_RESEARCH, owner="k1")
    service.go.release()
    wait_for(lambda: b.get(job.job_id, owner="k1").to_dict()["progress"]["done"] == 1, "progress on disk")
    seen = b.get(job.job_id, owner="k1")
    assert (seen.status, seen.errors) == ("running", [])  # not "interrupted": its worker is alive
    with pytest.raises(JobNotFound):
        b.get(job.job_id, owner="k2")
    service.go.release(2)
    wait_for(lambda: b.get(job.job_id, owner="k1").status == "done", "the job to finish")
    assert [line.count('"twin_id"') for line in b.result_lines(b.get(job.job_id, owner=None))] == [1, 1, 1]


def test_a_job_deleted_through_another_worker_stops_and_stays_deleted(
    workers: tuple[SurveyJobs, SurveyJobs, StepSurvey],
) -> None:
    a, b, service = workers
    job = a.submit(QUESTIONS, ["ann", "bob", "cy"], use=LOCAL_RESEARCH, owner="k1")
    service.go.release()
    wait_for(lambda: job.done == 1, "one answer")
    b.delete(b.get(job.job_id, owner="k1"))
    service.go.release(2)
    wait_for(lambda: job.job_id not in a._jobs, "the running worker to let the job go")
    assert not list(b.folder.glob(f"{job.job_id}*")), "the deleted job's files came back"
    with pytest.raises(JobNotFound):
        a.get(job.job_id, owner="k1")


def test_a_job_whose_worker_is_gone_reads_as_interrupted(
    workers: tuple[SurveyJobs, SurveyJobs, StepSurvey],
) -> None:
    a, b, _ = workers
    job = a.submit(QUESTIONS, ["ann"], use=LOCAL_RESEARCH, owner="k1")
    gone = subprocess.Popen(["true"])
    gone.wait()
    status = a.folder / f"{job.job_id}.json"
    data = json.loads(status.read_text())
    status.write_text(json.dumps({**data, "runner": {**data["runner"], "pid": gone.pid}}))
    seen = b.get(job.job_id, owner="k1")
    assert seen.status == "failed" and "interrupted" in seen.errors[0]
