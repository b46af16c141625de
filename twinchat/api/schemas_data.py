"""Request and response bodies of the data routes: ingestion, panels, structured answers, survey jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from twinchat.api.schemas import PURPOSE_HELP, CitationOut, PurposeIn

TwinId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]
PanelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]

EVENT_EXAMPLE = {
    "customer_id": "C-100",
    "text": "Bought a 3 tier cake stand",
    "source": "purchase",
    "timestamp": "2011-03-02",
}
QUESTION_EXAMPLE = {
    "id": "delivery_day",
    "text": "Which day do you prefer for deliveries?",
    "options": ["Weekday", "Saturday", "Sunday"],
}


class EventsRequest(BaseModel):
    events: list[Any] = Field(
        min_length=1,
        description=(
            "Event objects as in a JSONL history file: customer_id and text required; event_id, timestamp, "
            "source, kind optional; other fields are kept as attributes. Each is checked on its own: "
            "a bad one is reported with its index, the others are stored."
        ),
        examples=[[EVENT_EXAMPLE]],
    )
    panel: PanelName | None = Field(default=None, description="Put the events' twins into this panel.")
    source: str | None = Field(default=None, max_length=64, description="Source of events that name none.")


class ItemProblemOut(BaseModel):
    index: int = Field(description="The item's 0-based position in `events`.")
    field: str
    reason: str


class IngestOut(BaseModel):
    received: int
    stored: int = Field(description="New events stored.")
    duplicates: int = Field(description="Events already stored with the same id and text: nothing changed.")
    rejected: list[ItemProblemOut]
    twins: list[str] = Field(description="Twins the batch touched.")
    new_twins: list[str] = Field(description="Twins created by this batch.")


class PanelOut(BaseModel):
    panel: str
    twins: int


class PanelChange(BaseModel):
    add: list[TwinId] = Field(default_factory=list, examples=[["C-100", "C-200"]])
    remove: list[TwinId] = Field(default_factory=list)


class PanelMembers(BaseModel):
    members: list[TwinId] = Field(description="Exactly these twins, afterwards.", examples=[["C-100"]])


class ChooseRequest(BaseModel):
    question: Any = Field(
        description="{id, text, options}: a multiple-choice (or Likert) question.",
        examples=[QUESTION_EXAMPLE],
    )
    purpose: PurposeIn | None = Field(default=None, description=PURPOSE_HELP)


class PartOut(BaseModel):
    name: str = Field(description="own, similar, panel or llm")
    weight: float
    distribution: dict[str, float]
    detail: str


class ChoiceOut(BaseModel):
    twin_id: str
    question_id: str
    answer: str
    distribution: dict[str, float]
    reason: str
    citations: list[CitationOut]
    parts: list[PartOut] = Field(description="Each kind of evidence pooled, with its weight.")
    evidence: str = Field(description="own_answer, similar_twins or panel_only")
    simulated: bool = True


class SurveyRequest(BaseModel):
    questions: list[Any] = Field(
        min_length=1,
        description="[{id, text, options?, type?}]: with options a choice, without a free answer in words.",
        examples=[[QUESTION_EXAMPLE]],
    )
    panel: PanelName | None = Field(default=None, description="Survey this panel's twins ...")
    twin_ids: list[TwinId] | None = Field(default=None, description="... or these twins (one of the two).")
    purpose: PurposeIn | None = Field(default=None, description=PURPOSE_HELP)


class ProgressOut(BaseModel):
    done: int
    total: int = Field(description="Answers expected: twins x questions, less the refused twins' answers.")


class RefusalOut(BaseModel):
    twin_id: str | None
    reason: str


class SurveyJobOut(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    purpose: str
    questions: int
    twins: int
    progress: ProgressOut
    refused: list[RefusalOut] = Field(description="Twins left out: their customers did not consent.")
    errors: list[str]
    created_at: str
    started_at: str | None
    finished_at: str | None
    result: str | None = Field(description="Where the result is downloaded, once the job has finished.")


CAMPAIGN_EXAMPLE = {
    "name": "spring-cakestand",
    "channel": "email",
    "variants": {
        "A": {"text": "20% off cake stands this week", "price": 8.5},
        "B": {"text": "Free delivery on cake stands", "price": 10.6},
    },
    "segments": ["country", "churn_risk"],
}


class SimulationRequest(BaseModel):
    campaign: Any = Field(
        description="The campaign as in a CAMPAIGN.yaml file: name, channel, variants, segments?, compare?, "
        "response?, panel?",
        examples=[CAMPAIGN_EXAMPLE],
    )
    panel: PanelName | None = Field(default=None, description="Test on this panel (else the campaign's) ...")
    twin_ids: list[TwinId] | None = Field(default=None, description="... or on these twins (one of the two).")
