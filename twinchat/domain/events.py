"""Events: one thing a customer did or said, the raw material of a twin."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

KNOWN_SOURCES = ("purchase", "crm", "support", "review", "survey", "social", "web", "correction")
RESERVED_FIELDS = ("customer_id", "text", "event_id", "timestamp", "source", "kind")
MAX_TEXT_CHARS = 20_000
MAX_ID_CHARS = 512  # customer and event ids: what every metadata store (SQLite, PostgreSQL) indexes


class EventError(ValueError):
    """A record that cannot become an event; names the field at fault and what would be accepted."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class Event:
    """One event of a customer's history.

    >>> e = Event.from_record({"customer_id": "c1", "text": "Bought 2 mugs", "source": "purchase"})
    >>> e.event_id == Event.from_record({"customer_id": "c1", "text": "Bought 2 mugs", "source": "purchase"}).event_id
    True
    """

    customer_id: str
    text: str
    event_id: str
    timestamp: datetime | None = None
    source: str = "unknown"
    kind: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict[str, Any], *, default_source: str | None = None) -> Event:
        """Validate one raw record (a JSON object or a CSV row) and build the event, or raise EventError."""
        if not isinstance(record, dict):
            raise EventError(
                "record", f"expected an object with customer_id and text, got {type(record).__name__}"
            )
        customer_id = _required_str(record, "customer_id")
        text = _required_str(record, "text")
        if len(text) > MAX_TEXT_CHARS:
            raise EventError("text", f"{len(text)} characters; at most {MAX_TEXT_CHARS} are accepted")
        timestamp = parse_timestamp(record.get("timestamp"))
        source = _optional_str(record, "source") or default_source or "unknown"
        kind = _optional_str(record, "kind")
        attributes = {k: v for k, v in record.items() if k not in RESERVED_FIELDS and not _blank(v)}
        try:
            json.dumps(attributes)
        except TypeError as exc:
            raise EventError("attributes", f"extra fields must be JSON values ({exc})") from None
        event_id = _optional_str(record, "event_id") or content_id(
            customer_id=customer_id,
            text=text,
            timestamp=timestamp,
            source=source,
            kind=kind,
            attributes=attributes,
        )
        return cls(customer_id, text, event_id, timestamp, source.lower(), kind, attributes)

    def to_record(self) -> dict[str, Any]:
        """The event as a plain JSON-ready record; ``Event.from_record(e.to_record()) == e``."""
        record: dict[str, Any] = {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "text": self.text,
            "source": self.source,
        }
        if self.timestamp is not None:
            record["timestamp"] = self.timestamp.isoformat()
        if self.kind is not None:
            record["kind"] = self.kind
        record.update(self.attributes)
        return record


def content_id(
    *,
    customer_id: str,
    text: str,
    timestamp: datetime | None,
    source: str,
    kind: str | None,
    attributes: dict[str, Any],
) -> str:
    """A stable id from an event's content, so that ingesting the same record twice stores it once."""
    canonical = json.dumps(
        [customer_id, text, timestamp.isoformat() if timestamp else None, source.lower(), kind, attributes],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return "ev_" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 date or date-time (naive means UTC), or a Unix time in seconds; None when blank."""
    if _blank(value):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        parsed = _from_epoch(float(value))
    elif isinstance(value, str):
        text = value.strip()
        if _EPOCH.fullmatch(text):  # a Unix time read from a CSV arrives as text
            return _from_epoch(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise EventError(
                "timestamp",
                f"{value!r} is not ISO 8601 (accepted: 2011-03-04, 2011-03-04T10:15:00, ...+01:00)",
            ) from None
    else:
        raise EventError("timestamp", f"expected an ISO 8601 string, got {type(value).__name__}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_EPOCH = re.compile(r"-?\d{9,11}(\.\d+)?")
_MAX_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z


def _from_epoch(seconds: float) -> datetime:
    if not math.isfinite(seconds) or not -_MAX_EPOCH <= seconds <= _MAX_EPOCH:
        hint = (
            " (milliseconds? divide by 1000)"
            if math.isfinite(seconds) and abs(seconds) < 1000 * _MAX_EPOCH
            else ""
        )
        raise EventError("timestamp", f"{seconds!r} is not a Unix time in seconds{hint}")
    return datetime.fromtimestamp(seconds, tz=UTC)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _required_str(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if _blank(value):
        raise EventError(name, "is required and must not be empty")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise EventError(name, f"expected a string, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 17850.0 from a spreadsheet is customer 17850
    text = str(value).strip()
    if "\x00" in text:
        raise EventError(name, "contains a NUL character")
    if name.endswith("_id") and len(text) > MAX_ID_CHARS:
        raise EventError(name, f"{len(text)} characters; an id has at most {MAX_ID_CHARS}")
    return text


def _optional_str(record: dict[str, Any], name: str) -> str | None:
    return None if _blank(record.get(name)) else _required_str(record, name)
