"""An ingestion stopped between any two of its writes heals when run again (fakes; the real CLI killed with
SIGKILL: tests/integration/test_crash_safety.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.consistency import assert_stored_once
from twinchat.domain.readers import RawRecord
from twinchat.services import TwinService
from twinchat.testing import fake_service


class Killed(BaseException):
    """The process dying: a BaseException, so that nothing on the way catches it as an error."""


def records() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(40):
        twin = "C-0" if i % 7 == 6 else f"C-{i // 5}"  # new twins batch after batch, and a returning one
        if i % 5 == 0:
            rows.append(
                {
                    "customer_id": twin,
                    "text": f"Q: Which day suits delivery {i}? A: Saturday",
                    "source": "survey",
                    "question_id": f"q{i}",
                    "question": f"Which day suits delivery {i}?",
                    "answer": "Saturday",
                }
            )
        else:
            rows.append({"customer_id": twin, "text": f"Bought item {i}", "source": "purchase"})
    return rows


def ingest(service: TwinService, rows: list[dict[str, Any]]) -> Any:
    return service.ingest_records([RawRecord("history.jsonl", i + 1, r) for i, r in enumerate(rows)])


# Every write the ingestion makes, as (object, method): the run is killed right after the n-th call to it.
WRITES = [
    ("registry", "add_survey_answers"),
    ("registry", "set_consents"),
    ("store", "add_many"),
    ("registry", "touch_twins"),
    ("registry", "save_profiles"),
    ("registry", "record"),
]


def kill_after(service: TwinService, owner: str, method: str, *, calls: int) -> Callable[[], None]:
    target = getattr(service, owner)
    original = getattr(target, method)
    seen = 0

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        result = original(*args, **kwargs)
        seen += 1
        if seen == calls:
            raise Killed(f"killed after {owner}.{method} #{calls}")
        return result

    setattr(target, method, wrapped)
    return lambda: delattr(target, method)  # the instance attribute goes, the class's method is back


@pytest.mark.parametrize("calls", [1, 2])
@pytest.mark.parametrize(("owner", "method"), WRITES)
def test_a_run_killed_after_any_write_heals_when_run_again(
    tmp_path: Path, owner: str, method: str, calls: int
) -> None:
    service = fake_service(tmp_path, batch_size=8)
    rows = records()
    restore = kill_after(service, owner, method, calls=calls)
    with pytest.raises(Killed):
        ingest(service, rows)
    restore()

    again = ingest(service, rows)
    assert again.stored + again.duplicates == len(rows) and not again.rejected
    assert_stored_once(service, rows)

    third = ingest(service, rows)
    assert (third.stored, third.duplicates) == (0, len(rows))
    assert_stored_once(service, rows)


def test_a_twin_first_seen_by_a_killed_run_still_gets_its_default_consents(tmp_path: Path) -> None:
    service = fake_service(tmp_path, batch_size=100)
    rows = records()
    restore = kill_after(service, "registry", "touch_twins", calls=1)
    with pytest.raises(Killed):
        ingest(service, rows)
    restore()
    assert {t.twin_id for t in service.twins()} == {f"C-{i}" for i in range(8)}  # known before the re-run
    ingest(service, rows)
    for twin in service.twins():
        assert {p for p, c in service.registry.consents_of(twin.twin_id).items() if c.granted} == {
            "research",
            "product",
        }
