"""Conversations: multi-turn sessions with a twin that remember what was said.

A session stores its turns; each new question is answered with the recent turns as conversation (fitted to
the context window by the persona prompter) and retrieves evidence for the question read together with the
previous question, so that "and the red one?" still finds the red teapot.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twinchat.domain.models import Message

MAX_TURNS_KEPT = 20  # turns given to the prompter, which keeps what fits; older ones stay stored


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str
    created_at: datetime
    citations: list[str] = field(default_factory=list)  # event ids behind an assistant turn

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "created_at": self.created_at.isoformat(),
            "citations": self.citations,
        }


@dataclass(frozen=True)
class Session:
    session_id: str
    twin_id: str
    created_at: datetime
    turns: list[Turn] = field(default_factory=list)

    def conversation(self) -> list[Message]:
        """The recent turns as chat messages, oldest first."""
        recent = self.turns[-MAX_TURNS_KEPT:]
        return [Message("user" if t.role == "user" else "assistant", t.content) for t in recent]

    def retrieval_query(self, question: str) -> str:
        """The question, read with the previous question for follow-ups that lean on it."""
        previous = next((t.content for t in reversed(self.turns) if t.role == "user"), "")
        return f"{previous} {question}".strip() if previous else question

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "twin_id": self.twin_id,
            "created_at": self.created_at.isoformat(),
            "turns": [t.to_dict() for t in self.turns],
            "simulated": True,
        }


def new_session_id() -> str:
    return "ses_" + secrets.token_urlsafe(12)


def now() -> datetime:
    return datetime.now(UTC)
