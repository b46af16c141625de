"""Data over HTTP: ingest events in batches, panels, structured answers, and surveys run as background jobs.

Everything the CLI's ``ingest``, ``panels`` and ``survey`` commands do, on the same services.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from twinchat.api.deps import Key, Service, allow, visible
from twinchat.api.schemas_data import (
    ChoiceOut,
    ChooseRequest,
    EventsRequest,
    IngestOut,
    PanelChange,
    PanelMembers,
    PanelName,
    PanelOut,
    SurveyJobOut,
    SurveyRequest,
)
from twinchat.domain.events import Event, EventError
from twinchat.domain.keys import ApiKey
from twinchat.domain.readers import RawRecord, RowProblem
from twinchat.domain.survey import Question, QuestionError
from twinchat.jobs import JobNotFound, SurveyJob, SurveyJobs, jobs_folder, records_csv, records_json
from twinchat.services import IngestReport, TwinNotFound, TwinService

router = APIRouter(tags=["data"])
READERS = ("admin", "researcher", "product")  # who may list panels and ask for structured answers
CURATORS = ("admin", "researcher")  # who may change panels
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such twin, panel or job"}}
TOO_MANY: dict[int | str, dict[str, Any]] = {413: {"description": "more items than TWINCHAT_API_MAX_ITEMS"}}


class Problem(Exception):
    """An HTTP error with the API's error shape, for the statuses the app has no exception for."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def install(app: FastAPI) -> None:
    """Add these routes to the app, with its survey jobs (stopped with the app) and their errors."""
    jobs = SurveyJobs(app.state.service, jobs_folder(app.state.settings))
    app.state.survey_jobs = jobs
    app.include_router(router)
    app.router.on_shutdown.append(jobs.close)

    async def problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return JSONResponse(status_code=exc.status, content={"error": exc.error, "message": exc.message})

    async def no_job(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={"error": "not_found", "message": str(exc)})

    app.add_exception_handler(Problem, problem)
    app.add_exception_handler(JobNotFound, no_job)


def at_most(request: Request, n: int, what: str) -> None:
    """Refuse (413) a request carrying more than TWINCHAT_API_MAX_ITEMS items of one kind."""
    limit = request.app.state.settings.api_max_items
    if n > limit:
        raise Problem(
            413,
            "too_large",
            f"{n} {what} in one request; at most {limit} are accepted (TWINCHAT_API_MAX_ITEMS): "
            "send them in batches",
        )


# --- ingestion ---------------------------------------------------------------------------------------------


@router.post("/v1/events", response_model=IngestOut, status_code=201, responses=TOO_MANY)
async def ingest(
    body: EventsRequest, request: Request, response: Response, service: Service, key: Key
) -> dict:
    """Store a batch of events, creating twins on their first event, as `twinchat ingest` does.

    Every valid event is stored; each bad one is reported with its index, field and reason. An event already
    stored counts as a duplicate; reusing a stored event_id with a different text is refused. 201 when
    something was stored, 200 when nothing new was.
    """
    allow(key, "admin")
    at_most(request, len(body.events), "events")
    return await _ingest(service, key, body, response, items=body.events)


@router.post("/v1/twins/{twin_id}/events", response_model=IngestOut, status_code=201, responses=TOO_MANY)
async def ingest_twin(
    twin_id: str, body: EventsRequest, request: Request, response: Response, service: Service, key: Key
) -> dict:
    """Store a batch of one customer's events, creating the twin if it is new; customer_id may be left out."""
    allow(key, "admin")
    at_most(request, len(body.events), "events")
    items = [_for_twin(item, twin_id.strip()) for item in body.events]
    return await _ingest(service, key, body, response, items=items)


def _for_twin(item: Any, twin_id: str) -> Any:
    """The item with the twin's customer_id filled in, or a problem when it names another customer."""
    if not isinstance(item, dict):
        return item
    named = item.get("customer_id")
    if named is None or (isinstance(named, str) and not named.strip()):
        return {**item, "customer_id": twin_id}
    try:
        named = Event.from_record(item).customer_id
    except EventError:
        return item  # the ingestion reports it
    if named != twin_id:
        return EventError("customer_id", f"{named!r} is not the twin {twin_id!r} this request is for")
    return item


async def _ingest(
    service: TwinService, key: ApiKey, body: EventsRequest, response: Response, *, items: list[Any]
) -> dict:
    records: list[RawRecord | RowProblem] = []
    for index, item in enumerate(items):
        if isinstance(item, EventError):
            records.append(RowProblem("request", None, item.field, item.reason, index))
        elif not isinstance(item, dict):
            reason = f"expected an object with customer_id and text, got {_json_type(item)}"
            records.append(RowProblem("request", None, "record", reason, index))
        else:
            records.append(RawRecord("request", None, item, index))
    report: IngestReport = await run_in_threadpool(
        service.ingest_records, records, source=body.source, panel=body.panel, audit_as=key.actor
    )
    if not report.stored:
        response.status_code = 200
    rejected = sorted(report.rejected, key=lambda p: p.item if p.item is not None else -1)
    return {
        "received": report.rows_read,
        "stored": report.stored,
        "duplicates": report.duplicates,
        "rejected": [{"index": p.item, "field": p.field, "reason": p.reason} for p in rejected],
        "twins": sorted(report.twins_touched),
        "new_twins": sorted(report.new_twins),
    }


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --- panels ------------------------------------------------------------------------------------------------


@router.get("/v1/panels", response_model=list[PanelOut])
async def panels(service: Service, key: Key) -> list[dict]:
    """Every panel with its number of twins (`GET /v1/twins?panel=P` lists a panel's twins)."""
    allow(key, *READERS)
    return [{"panel": p, "twins": n} for p, n in (await run_in_threadpool(service.panels)).items()]


@router.patch("/v1/panels/{panel}", response_model=PanelOut, responses={**NOT_FOUND, **TOO_MANY})
async def change_panel(
    panel: PanelName, body: PanelChange, request: Request, service: Service, key: Key
) -> dict:
    """Add twins to a panel (creating it) or take them out; an unknown twin is refused and nothing changes."""
    allow(key, *CURATORS)
    at_most(request, len(body.add) + len(body.remove), "twins")
    counts = await run_in_threadpool(service.set_panel, panel, add=body.add, remove=body.remove)
    return {"panel": panel, "twins": counts.get(panel, 0)}


@router.put("/v1/panels/{panel}", response_model=PanelOut, responses={**NOT_FOUND, **TOO_MANY})
async def set_panel(
    panel: PanelName, body: PanelMembers, request: Request, service: Service, key: Key
) -> dict:
    """Make the panel exactly these twins (an empty list empties it)."""
    allow(key, *CURATORS)
    at_most(request, len(body.members), "twins")
    current = {t.twin_id for t in await run_in_threadpool(service.twins, panel=panel)}
    wanted = dict.fromkeys(body.members)
    add, remove = [t for t in wanted if t not in current], sorted(current - set(wanted))
    counts = await run_in_threadpool(service.set_panel, panel, add=add, remove=remove)
    return {"panel": panel, "twins": counts.get(panel, 0)}


# --- structured answers ------------------------------------------------------------------------------------


@router.post(
    "/v1/twins/{twin_id}/choose",
    response_model=ChoiceOut,
    responses={403: {"description": "no consent for this purpose"}, **NOT_FOUND},
)
async def choose(twin_id: str, body: ChooseRequest, service: Service, key: Key) -> dict:
    """The twin's answer to a multiple-choice question: a distribution over the options, the answer, a reason,
    the evidence it stood on, and the weight of each part that produced it. Simulated."""
    allow(key, *READERS)
    use = key.use(body.purpose)
    question = _question(body.question, where="question")
    if not question.is_choice:
        raise ValueError(
            "question.options: a structured answer needs at least two options; "
            f"ask a question in words with POST /v1/twins/{twin_id}/ask"
        )
    return (await run_in_threadpool(service.choose, visible(key, twin_id), question, use=use)).to_dict()


def _question(data: Any, *, where: str, index: int = 0) -> Question:
    try:
        return Question.from_dict(data, index=index)
    except QuestionError as exc:
        field = "" if exc.field == "question" else f".{exc.field}"
        raise ValueError(f"{where}{field}: {exc.reason}") from None


# --- surveys -----------------------------------------------------------------------------------------------


def _jobs(request: Request) -> SurveyJobs:
    return request.app.state.survey_jobs


def _job_out(job: SurveyJob) -> dict:
    return {**job.to_dict(), "result": f"/v1/surveys/{job.job_id}/result" if job.finished else None}


def _owned(request: Request, key: ApiKey, job_id: str) -> SurveyJob:
    """The job, if this key started it (an admin key sees every job); otherwise 404, as for no job."""
    return _jobs(request).get(job_id, owner=None if key.role == "admin" else key.key_id)


@router.post(
    "/v1/surveys",
    response_model=SurveyJobOut,
    status_code=202,
    responses={202: {"description": "accepted; poll the Location"}, **NOT_FOUND, **TOO_MANY},
)
async def start_survey(
    body: SurveyRequest, request: Request, response: Response, service: Service, key: Key
) -> dict:
    """Start a survey of a panel (or of given twins) in the background, as `twinchat survey` does.

    Twins whose customers did not consent to the purpose are left out and listed in the job's `refused`.
    Poll `GET /v1/surveys/{job_id}`, then download `GET /v1/surveys/{job_id}/result?format=json|csv`.
    """
    allow(key, *READERS)
    use = key.use(body.purpose)
    at_most(request, len(body.questions), "questions")
    questions = [_question(q, where=f"questions.{i}", index=i) for i, q in enumerate(body.questions)]
    seen: dict[str, int] = {}
    for i, q in enumerate(questions):
        if q.id in seen:
            raise ValueError(f"questions.{i}.id: {q.id!r} is already the id of question {seen[q.id]}")
        seen[q.id] = i
    if (body.panel is None) == (body.twin_ids is None):
        given = "both were given" if body.panel is not None else "neither was given"
        raise ValueError(f"panel, twin_ids: name a panel or list twin_ids ({given})")
    if body.panel is not None:
        twin_ids = [t.twin_id for t in await run_in_threadpool(service.twins, panel=body.panel)]
        if not twin_ids:
            raise Problem(404, "not_found", f"panel {body.panel!r} has no twins; GET /v1/panels lists them")
    else:
        twin_ids = list(dict.fromkeys(body.twin_ids or []))
        at_most(request, len(twin_ids), "twins")
        if not twin_ids:
            raise ValueError("twin_ids: list at least one twin")
        known = {t.twin_id for t in await run_in_threadpool(service.twins)}
        missing = [t for t in twin_ids if t not in known or not key.may_see(t)]
        if missing:
            raise TwinNotFound(", ".join(missing))
    job = _jobs(request).submit(questions, twin_ids, use=use, owner=key.key_id)
    response.headers["Location"] = f"/v1/surveys/{job.job_id}"
    return _job_out(job)


@router.get("/v1/surveys/{job_id}", response_model=SurveyJobOut, responses=NOT_FOUND)
async def survey_status(job_id: str, request: Request, key: Key) -> dict:
    """The job's status and progress, the twins it left out, and its errors."""
    return _job_out(_owned(request, key, job_id))


@router.get(
    "/v1/surveys/{job_id}/result",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}, "description": "the records"},
        409: {"description": "the job has not finished"},
        **NOT_FOUND,
    },
)
async def survey_result(
    job_id: str,
    request: Request,
    key: Key,
    format: Literal["json", "csv"] = Query(default="json", description="json: a list of records; csv"),
) -> StreamingResponse:
    """The survey's records, as `twinchat survey --out FILE.json|.csv` writes them, once the job has finished."""
    job = _owned(request, key, job_id)
    if not job.finished:
        raise Problem(
            409,
            "not_ready",
            f"survey job {job_id} is {job.status} ({job.done} of {job.total} answers); "
            f"poll GET /v1/surveys/{job_id} until it is done",
        )
    lines = _jobs(request).result_lines(job)
    body, media = (
        (records_csv(lines), "text/csv") if format == "csv" else (records_json(lines), "application/json")
    )
    return StreamingResponse(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="twinchat-survey-{job_id}.{format}"'},
    )


@router.delete("/v1/surveys/{job_id}", status_code=204, responses=NOT_FOUND)
async def delete_survey(job_id: str, request: Request, key: Key) -> Response:
    """Cancel the job if it is still running, and delete its status and result."""
    job = _owned(request, key, job_id)
    await run_in_threadpool(_jobs(request).delete, job)
    return Response(status_code=204)
