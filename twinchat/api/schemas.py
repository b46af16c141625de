"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

PurposeIn = Literal["research", "product", "marketing"]
PURPOSE_HELP = (
    "Why the twin is used; the key's role must allow it and the customer must have consented to it. "
    "Default: the role's own (researcher: research, product: product); a customer key always acts for itself."
)


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000, examples=["What do you usually buy from us?"])
    stream: bool = Field(
        default=False, description="Server-sent events: token events, then one answer event."
    )
    purpose: PurposeIn | None = Field(default=None, description=PURPOSE_HELP)


class CitationOut(BaseModel):
    event_id: str
    text: str
    score: float


class AnswerOut(BaseModel):
    twin_id: str
    answer: str
    citations: list[CitationOut]
    abstained: bool
    simulated: bool = True
    model: str


class TwinOut(BaseModel):
    twin_id: str
    created_at: str
    updated_at: str
    n_events: int
    panels: list[str]
    synthetic: bool
    display_name: str | None = None


class ErrorOut(BaseModel):
    error: str
    message: str


class MessageRequest(BaseModel):
    message: str = Field(min_length=1, max_length=4000, examples=["And how was the delivery?"])
    stream: bool = False
    purpose: PurposeIn | None = Field(default=None, description=PURPOSE_HELP)


class TurnOut(BaseModel):
    role: str
    content: str
    created_at: str
    citations: list[str]


class SessionOut(BaseModel):
    session_id: str
    twin_id: str
    created_at: str
    turns: list[TurnOut]
    simulated: bool = True


class CorrectionRequest(BaseModel):
    statement: str = Field(
        min_length=1, max_length=2000, examples=["I moved to Lyon last year; I no longer live in Paris."]
    )


class SurveyFixOut(BaseModel):
    question_id: str
    answer: str


class CorrectionOut(BaseModel):
    twin_id: str
    event_id: str
    statement: str
    superseded: list[str] = Field(
        description="Memories the correction invalidated; kept, but no longer used."
    )
    survey_answer: SurveyFixOut | None


class MemoryStatusOut(BaseModel):
    event_id: str
    state: Literal["superseded", "forgotten"]
    invalid_since: str
    invalidated_by: str
    reason: str


class MemoryOut(BaseModel):
    event_id: str
    text: str
    source: str
    valid: bool
    timestamp: str | None = None
    status: MemoryStatusOut | None = None
    model_config = {"extra": "allow"}


class ConsentRequest(BaseModel):
    granted: bool


class ConsentOut(BaseModel):
    purpose: str
    granted: bool
    updated_at: str
    updated_by: str


class AuditOut(BaseModel):
    id: int | None
    at: str
    actor: str
    action: str
    twin_id: str
    purpose: str
    evidence: list[str]
    detail: dict[str, Any]


class ErasureOut(BaseModel):
    erased: bool = True
    tombstone: str = Field(description="The audit keeps this id, and no personal data, for the erasure.")


class KeyRequest(BaseModel):
    role: Literal["admin", "researcher", "product", "customer"]
    twin_id: str | None = Field(
        default=None, description="The customer's own twin: required for a customer key."
    )
    label: str = Field(default="", max_length=256, examples=["checkout service"])


class KeyOut(BaseModel):
    key_id: str
    role: str
    twin_id: str | None
    label: str
    created_at: str
    revoked_at: str | None


class KeyCreated(KeyOut):
    key: str = Field(description="The API key: shown this once, send it as `Authorization: Bearer KEY`.")
