"""The plain objects twinchat passes around: twins, memories, citations, answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from twinchat.domain.events import Event

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass
class Twin:
    """A customer's twin: one per customer id, with its own memory collection."""

    twin_id: str
    created_at: datetime
    updated_at: datetime
    n_events: int = 0
    panels: list[str] = field(default_factory=list)
    synthetic: bool = False
    display_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return data


@dataclass(frozen=True)
class Memory:
    """An event as retrieved for a question, with its relevance (cosine similarity, -1..1)."""

    event: Event
    score: float


@dataclass(frozen=True)
class Citation:
    event_id: str
    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "text": self.text, "score": round(self.score, 4)}


@dataclass(frozen=True)
class Answer:
    """A twin's answer. Always simulated: it is what the customer would likely say, not what they said."""

    twin_id: str
    answer: str
    citations: list[Citation]
    abstained: bool
    model: str
    simulated: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "twin_id": self.twin_id,
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "abstained": self.abstained,
            "simulated": self.simulated,
            "model": self.model,
        }
