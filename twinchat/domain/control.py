"""The customer in control: consent per purpose, the audit trail, and the validity of memories.

Plain Python. The service checks consent at every entry point and writes an audit entry for every use,
refusals included; stores keep these records (SQL by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

PURPOSES = ("research", "product", "marketing")
Purpose = Literal["research", "product", "marketing"]
# A customer looking at or correcting their own twin needs no consent: it is their data, used for them.
SELF = "self"
MARKETING = "marketing"


class ConsentDenied(PermissionError):
    """A use of a twin its customer has not consented to; the message says why and since when."""

    def __init__(self, twin_id: str, purpose: str, consent: Consent | None) -> None:
        if consent is None:
            why = f"the customer never granted consent for {purpose}"
        else:
            why = f"the customer withdrew consent for {purpose} on {consent.updated_at:%Y-%m-%d %H:%M} UTC"
        super().__init__(f"twin {twin_id}: {why}")
        self.twin_id, self.purpose = twin_id, purpose


@dataclass(frozen=True)
class Use:
    """Who is using a twin and why: every entry point checks the purpose and audits the actor."""

    actor: str = "local"
    purpose: str = "research"


# The defaults of the command line: a local researcher, and a local customer acting on their own twin.
LOCAL_RESEARCH = Use("local", "research")
LOCAL_CUSTOMER = Use("local", SELF)
LOCAL_MARKETING = Use("local", MARKETING)  # behaviour predictions: what a campaign would be planned on


def check_purpose(purpose: str) -> str:
    if purpose not in (*PURPOSES, SELF):
        raise ValueError(f"purpose: {purpose!r} is not one of {', '.join(PURPOSES)}")
    return purpose


@dataclass(frozen=True)
class Consent:
    twin_id: str
    purpose: str
    granted: bool
    updated_at: datetime
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "purpose": self.purpose,
            "granted": self.granted,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One use of or change to a twin: who, what, which twin, for which purpose, on which evidence."""

    at: datetime
    actor: str  # "local:<user>", "key:<key id>", ...
    action: str  # ask, chat, choose, survey, export, correct, forget, consent, erase, ingest, refused
    twin_id: str
    purpose: str
    evidence: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    entry_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.entry_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "twin_id": self.twin_id,
            "purpose": self.purpose,
            "evidence": self.evidence,
            "detail": self.detail,
        }


MemoryState = Literal["superseded", "forgotten"]


@dataclass(frozen=True)
class MemoryStatus:
    """A memory that no longer counts: superseded by a correction, or forgotten at the customer's request."""

    twin_id: str
    event_id: str
    state: MemoryState
    at: datetime
    by: str  # the correction's event id, or the actor who asked to forget it
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "state": self.state,
            "invalid_since": self.at.isoformat(),
            "invalidated_by": self.by,
            "reason": self.reason,
        }
