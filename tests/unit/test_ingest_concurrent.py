"""Two API workers ingesting for the same twin at once: one writes a count (or profile) it derived before the
other stored, after the other wrote its own. The later writer counts again and heals it (fakes; the real
thing: tests/integration/test_multiworker.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.consistency import assert_stored_once
from twinchat.domain.readers import RawRecord
from twinchat.services import TwinService
from twinchat.testing import fake_service


def event(n: int) -> dict[str, Any]:
    return {"customer_id": "ann", "text": f"Bought teapot number {n}", "source": "purchase"}


def ingest(service: TwinService, rows: list[dict[str, Any]]) -> None:
    service.ingest_records([RawRecord("request", None, r) for r in rows])


@pytest.mark.parametrize("late_write", ["touch_twins", "save_profiles"])
def test_a_worker_writing_what_it_derived_before_another_stored_is_corrected(
    tmp_path: Path, late_write: str
) -> None:
    a = fake_service(tmp_path)
    b = fake_service(tmp_path)  # another worker: its own registry connection, the same database
    b.store = a.store  # ... and the same store (a Chroma server)
    ingest(a, [event(0)])
    write = getattr(a.registry, late_write)
    overtaken = False

    def late(*args: Any, **kwargs: Any) -> None:
        nonlocal overtaken
        if not overtaken:  # b stores an event and writes everything before a's write lands
            overtaken = True
            ingest(b, [event(2)])
        write(*args, **kwargs)

    setattr(a.registry, late_write, late)
    ingest(a, [event(1)])
    assert overtaken
    assert_stored_once(a, [event(0), event(1), event(2)], audit_actor=None)
