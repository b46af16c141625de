"""Survey jobs: a survey run in the background, its progress, and its result kept on disk for download.

Jobs run in a small thread pool of the process that accepted them. Each job's status and records are written
under ``TWINCHAT_HOME/jobs`` (``<id>.json``, ``<id>.jsonl``), so a finished result can still be downloaded after
a restart, and any API worker sharing the home can report a job's progress and serve its result (the status
names the process running it, and its progress is saved as it goes). Results hold what twins said and cited:
erasing a twin removes its records from every result (``erase_twin``, called by ``TwinService.erase``), and a
job's owner can delete the job.

>>> job = SurveyJob("job_0123456789abcdef", "k1", "research", questions=2, twins=3, created_at=now())
>>> job.status, job.total, job.finished
('queued', 6, False)
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinchat.domain.control import Use
from twinchat.domain.sessions import now
from twinchat.domain.survey import Question

if TYPE_CHECKING:
    from twinchat.config import Settings
    from twinchat.services import TwinService

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")
# The columns of a CSV result: the API's download and `twinchat survey --out FILE.csv`.
CSV_COLUMNS = (
    "twin_id",
    "question_id",
    "answer",
    "distribution",
    "citations",
    "reason",
    "evidence",
    "simulated",
)
# Two surveys at a time: each is mostly SQL and CPU-bound scoring, and the local LLM serialises its calls anyway.
WORKERS = 2
_JOB_ID = re.compile(r"job_[0-9a-f]{16}")
# Result files are rewritten by erasure and by a job's end; one lock per process keeps the two apart.
_FILES = threading.RLock()
# How often a running job saves its progress for the other workers to read.
PROGRESS_EVERY_S = 0.5


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no survey job {job_id!r}; `POST /v1/surveys` starts one")
        self.job_id = job_id


def jobs_folder(settings: Settings) -> Path:
    return settings.home / "jobs"


@dataclass
class SurveyJob:
    """One survey run: who asked, for which purpose, how far it got, and which twins were left out."""

    job_id: str
    owner: str  # the key id that started it: only that key (or an admin) sees the job
    purpose: str
    questions: int
    twins: int
    created_at: datetime
    status: str = "queued"  # queued, running, done, failed, cancelled
    done: int = 0
    total: int = -1  # answers expected: twins x questions, less the refused twins' once they are known
    refused: list[dict[str, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    deleted: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.total < 0:
            self.total = self.twins * self.questions

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "purpose": self.purpose,
            "questions": self.questions,
            "twins": self.twins,
            "progress": {"done": self.done, "total": self.total},
            "refused": self.refused,
            "errors": self.errors,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SurveyJob:
        def when(value: str | None) -> datetime | None:
            return datetime.fromisoformat(value) if value else None

        return cls(
            data["job_id"],
            data["owner"],
            data["purpose"],
            data["questions"],
            data["twins"],
            datetime.fromisoformat(data["created_at"]),
            data["status"],
            data["progress"]["done"],
            data["progress"]["total"],
            data["refused"],
            data["errors"],
            when(data["started_at"]),
            when(data["finished_at"]),
        )


class SurveyJobs:
    """The survey jobs of one API process: started in a thread pool, polled, downloaded, deleted."""

    def __init__(self, service: TwinService, folder: Path, *, workers: int = WORKERS) -> None:
        self.service = service
        self.folder = folder
        self.workers = workers
        self._jobs: dict[str, SurveyJob] = {}
        self._futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        _INSTANCES.add(self)

    def submit(
        self, questions: Sequence[Question], twin_ids: Sequence[str], *, use: Use, owner: str
    ) -> SurveyJob:
        """Queue a survey; the twins must exist (the caller checked), refusals are found when it runs."""
        job = SurveyJob(
            f"job_{secrets.token_hex(8)}", owner, use.purpose, len(questions), len(twin_ids), created_at=now()
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        self._save(job, create=True)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="survey-job")
            self._jobs[job.job_id] = job
            self._futures[job.job_id] = self._pool.submit(
                self._run, job, list(questions), list(twin_ids), use
            )
        return job

    def get(self, job_id: str, *, owner: str | None) -> SurveyJob:
        """The job, if ``owner`` started it (None: any owner, for an admin); otherwise JobNotFound."""
        if not _JOB_ID.fullmatch(job_id):  # also keeps a crafted id from naming a file outside the folder
            raise JobNotFound(job_id)
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            job = self._load(job_id)
        if job is None or job.deleted or (owner is not None and job.owner != owner):
            raise JobNotFound(job_id)
        return job

    def result_lines(self, job: SurveyJob) -> Iterator[str]:
        """The finished job's records, one JSON document a line."""
        try:
            handle = self._result_path(job.job_id).open(encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            yield from (line for line in handle if line.strip())

    def delete(self, job: SurveyJob) -> None:
        """Cancel the job if it has not finished, and remove its status and result."""
        job.cancel.set()
        with self._lock:
            future = self._futures.pop(job.job_id, None)
            self._jobs.pop(job.job_id, None)
        if future is not None:
            future.cancel()  # a queued job never starts; a running one stops after its current answer
        with _FILES:  # a running job that finishes after this sees `deleted` and writes nothing
            job.deleted = True
            self._remove_files(job.job_id)

    def close(self) -> None:
        """Stop: queued jobs are cancelled, running ones stop after their current answer."""
        with self._lock:
            jobs, pool, self._pool = list(self._jobs.values()), self._pool, None
        for job in jobs:
            job.cancel.set()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        for job in jobs:
            if job.status == "queued":
                job.status, job.finished_at = "cancelled", now()
                job.errors.append("the server stopped before the job started")
                self._save(job)

    # --- the work --------------------------------------------------------------------------------------

    def _run(self, job: SurveyJob, questions: list[Question], twin_ids: list[str], use: Use) -> None:
        if job.cancel.is_set():
            return
        job.status, job.started_at = "running", now()
        self._save(job)
        refused: list[str] = []
        saved = time.monotonic()
        partial = self._partial_path(job.job_id)
        # The outcome is published only with the result files (in _finish): a reader never sees "done" first.
        outcome = "done"
        try:
            with partial.open("w", encoding="utf-8") as out:
                for record in self.service.survey(questions, twin_ids, use=use, refused=refused):
                    if job.done == 0:  # the survey checks every twin's consent before its first answer
                        self._count_refused(job, refused, twin_ids)
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    job.done += 1
                    if time.monotonic() - saved > PROGRESS_EVERY_S:
                        self._save(job)  # deleted by another worker: the job sees it here and stops
                        saved = time.monotonic()
                    if job.cancel.is_set():
                        outcome = "cancelled"
                        job.errors.append("cancelled before it finished")
                        break
        except Exception as exc:  # noqa: BLE001 - a failed job reports why; the server and other jobs go on
            log.exception("survey job %s failed", job.job_id)
            outcome = "failed"
            job.errors.append(f"{type(exc).__name__}: {exc}")
        self._count_refused(job, refused, twin_ids)
        self._finish(job, outcome)

    def _count_refused(self, job: SurveyJob, refused: list[str], twin_ids: list[str]) -> None:
        if len(job.refused) == len(refused):
            return
        job.refused = _refusals(refused, twin_ids)
        job.total = (job.twins - len(job.refused)) * job.questions

    def _finish(self, job: SurveyJob, outcome: str) -> None:
        partial = self._partial_path(job.job_id)
        with _FILES:
            if job.deleted or not self._status_path(job.job_id).exists():  # deleted here or by another worker
                job.deleted, job.status = True, outcome
                self._remove_files(job.job_id)
                self._forget(job)
                return
            # A twin erased while the job ran may have answered before it was: leave it out of the result.
            lines = partial.read_text(encoding="utf-8").splitlines() if partial.exists() else []
            answered = {json.loads(line)["twin_id"] for line in lines}
            gone = {t for t in answered if self.service.registry.get(t) is None}
            if gone:
                lines = [line for line in lines if json.loads(line)["twin_id"] not in gone]
                job.done = len(lines)
            _write_atomic(self._result_path(job.job_id), "".join(line + "\n" for line in lines))
            partial.unlink(missing_ok=True)
            job.finished_at = now()
            self._save(job, status=outcome)
            job.status = outcome  # readers of this process's memory see the outcome only once it is on disk
        self._forget(job)

    def _forget(self, job: SurveyJob) -> None:
        # A finished job is read from its files from now on: erasure and deletion (by any process sharing
        # the home) change those, never this process's memory.
        with self._lock:
            self._jobs.pop(job.job_id, None)
            self._futures.pop(job.job_id, None)

    # --- files -----------------------------------------------------------------------------------------

    def _status_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def _result_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.jsonl"

    def _partial_path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.jsonl.part"

    def _save(self, job: SurveyJob, *, status: str | None = None, create: bool = False) -> None:
        with _FILES:
            path = self._status_path(job.job_id)
            if not create and not job.deleted and not path.exists():
                # Another worker deleted the job (its owner asked there): stop it, write nothing back.
                job.deleted = True
                job.cancel.set()
            if not job.deleted:
                data = {
                    **job.to_dict(),
                    "owner": job.owner,
                    "runner": {"host": socket.gethostname(), "pid": os.getpid()},
                    **({"status": status} if status else {}),
                }
                _write_atomic(path, json.dumps(data))

    def _load(self, job_id: str) -> SurveyJob | None:
        try:
            data = json.loads(self._status_path(job_id).read_text(encoding="utf-8"))
            job = SurveyJob.from_dict(data)
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        if not job.finished and not _running_elsewhere(data.get("runner"), job_id):
            # Not running here, and jobs run only in the process that accepted them: that process stopped.
            job.status = "failed"
            job.errors.append("interrupted: the API process running it stopped before it finished")
        return job

    def _remove_files(self, job_id: str) -> None:
        with _FILES:
            for path in (self._status_path(job_id), self._result_path(job_id), self._partial_path(job_id)):
                path.unlink(missing_ok=True)


# Every SurveyJobs of this process: two apps in one process (tests, an embedding application) are two workers.
_INSTANCES: weakref.WeakSet[SurveyJobs] = weakref.WeakSet()


def _running_elsewhere(runner: Any, job_id: str) -> bool:
    """Whether the process named in a job's status (another API worker) is still alive to run it."""
    if not isinstance(runner, dict):
        return False  # written before runners were named
    if runner.get("pid") == os.getpid():
        return any(job_id in jobs._jobs for jobs in list(_INSTANCES))
    if runner.get("host") != socket.gethostname():
        return True  # another machine's worker, sharing the home: its status is all there is to go by
    try:
        os.kill(int(runner["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _refusals(reasons: Iterable[str], twin_ids: Sequence[str]) -> list[dict[str, str | None]]:
    """Pair each refusal ("twin ID: why") with its twin; the survey refuses twins in the order given."""
    out: list[dict[str, str | None]] = []
    position = 0
    for reason in reasons:
        match = next(
            (i for i in range(position, len(twin_ids)) if reason.startswith(f"twin {twin_ids[i]}: ")), None
        )
        out.append({"twin_id": twin_ids[match] if match is not None else None, "reason": reason})
        if match is not None:
            position = match + 1
    return out


def records_csv(lines: Iterable[str]) -> Iterator[str]:
    """Result records (JSON lines) as CSV rows, header first; distribution and citations stay JSON."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writeheader()
    yield flush()
    for line in lines:
        record = json.loads(line)
        row = dict(record)
        row["distribution"] = json.dumps(record.get("distribution", {}), ensure_ascii=False)
        row["citations"] = json.dumps(record.get("citations", []), ensure_ascii=False)
        writer.writerow(row)
        yield flush()


def records_json(lines: Iterable[str]) -> Iterator[str]:
    """Result records (JSON lines) as one JSON array, streamed."""
    yield "["
    for i, line in enumerate(lines):
        yield ("," if i else "") + line.strip()
    yield "]\n"


def erase_twin(folder: Path, twin_id: str) -> None:
    """Remove a twin's answers and refusal from every survey result under ``folder``."""
    if not folder.is_dir():
        return
    with _FILES:
        for path in folder.glob("job_*.jsonl"):
            _rewrite(path, lambda lines: [ln for ln in lines if _twin_of(ln) != twin_id])
        for path in folder.glob("job_*.json"):
            try:
                status = json.loads(path.read_text(encoding="utf-8"))
                kept = [r for r in status["refused"] if r.get("twin_id") != twin_id]
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if len(kept) != len(status["refused"]):
                _write_atomic(path, json.dumps({**status, "refused": kept}))


def _twin_of(line: str) -> str | None:
    try:
        return json.loads(line).get("twin_id")
    except ValueError:
        return None


def _rewrite(path: Path, keep: Callable[[list[str]], list[str]]) -> None:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    kept = keep(lines)
    if len(kept) != len(lines):
        _write_atomic(path, "".join(ln + "\n" for ln in kept))


def _write_atomic(path: Path, text: str) -> None:
    # Written beside the target, then renamed: a reader never sees half a file, and the old bytes go with it.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
