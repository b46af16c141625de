"""What "every event stored exactly once, everything derived consistent" means, checked by reading back the
store and the registry (used by the crash-safety and multi-worker tests)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from twinchat.domain.events import Event
from twinchat.domain.survey import survey_answer_of
from twinchat.services import TOMBSTONE_PREFIX, TwinService


def expected_events(records: Iterable[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Each twin's event ids, as ingestion derives them from these records."""
    events = [Event.from_record(dict(r)) for r in records]
    by_twin: dict[str, set[str]] = {}
    for event in events:
        by_twin.setdefault(event.customer_id, set()).add(event.event_id)
    return by_twin


def assert_stored_once(
    service: TwinService,
    records: Iterable[Mapping[str, Any]],
    *,
    audit_actor: str | None = "ingest",
    consents: Iterable[str] | None = None,
) -> None:
    """Every record's event is stored once in its twin's collection and nothing else is; each twin's count in
    the registry equals its store count; its profile folds exactly its stored events; it has its default
    consents (``consents``; the settings' defaults when None); every survey answer is stored once; and the
    ingestion audit (entries by ``audit_actor``; None: any actor) names every stored event exactly once."""
    records = list(records)
    wanted = expected_events(records)
    registry = service.registry
    twins = {t.twin_id: t for t in registry.list_twins()}
    assert set(twins) == set(wanted), f"twins: {sorted(set(twins) ^ set(wanted))[:10]} differ"
    purposes = set(service.settings.default_consent if consents is None else consents)
    survey_events = {e.event_id for r in records if survey_answer_of(e := Event.from_record(dict(r)))}
    answers = Counter((a.twin_id, a.event_id) for a in registry.survey_answers())
    assert all(n == 1 for n in answers.values()), "a survey answer is stored twice"
    assert {e for _, e in answers} == survey_events, "survey answers differ from the survey events"
    audited: Counter[str] = Counter()
    for entry in registry.audit_entries():
        erased = entry.twin_id.startswith(TOMBSTONE_PREFIX)  # kept with its action and time only
        if entry.action == "ingest" and not erased and (audit_actor is None or entry.actor == audit_actor):
            assert entry.detail["stored"] == len(entry.evidence), entry
            audited.update(f"{entry.twin_id}\x00{e}" for e in entry.evidence)
    for twin_id, event_ids in wanted.items():
        stored = [e.event_id for e in service.store.events(twin_id)]
        assert len(stored) == len(set(stored)) and set(stored) == event_ids, (
            f"{twin_id}: stored events differ"
        )
        assert service.store.count(twin_id) == len(event_ids) == twins[twin_id].n_events, (
            f"{twin_id}: {twins[twin_id].n_events} events in the registry, {service.store.count(twin_id)} stored"
        )
        profile = registry.get_profile(twin_id)
        assert profile is not None and profile["n_events"] == len(event_ids), f"{twin_id}: profile behind"
        granted = {p for p, c in registry.consents_of(twin_id).items() if c.granted}
        assert purposes <= granted, f"{twin_id}: default consents missing ({sorted(purposes - granted)})"
        for event_id in event_ids:
            n = audited[f"{twin_id}\x00{event_id}"]
            assert n == 1, f"{twin_id}/{event_id}: named by {n} ingestion audit entries"
    assert sum(audited.values()) == sum(len(ids) for ids in wanted.values()), "audit names unknown events"
