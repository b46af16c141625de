"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000, examples=["What do you usually buy from us?"])
    stream: bool = Field(
        default=False, description="Server-sent events: token events, then one answer event."
    )


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
