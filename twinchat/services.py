"""The services the CLI, the API and the UI share: ingest history, list twins, ask a twin.

A TwinService holds ports, never SDKs; ``TwinService.from_settings`` wires the configured backends, each
created on first use so that commands which do not need the LLM never load it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from twinchat.config import Settings
from twinchat.domain import strategy
from twinchat.domain.behaviour import (
    HORIZON_DAYS,
    LifetimeFit,
    PurchaseDay,
    category_trends,
    churn_level,
    not_available,
    predictions_document,
    purchase_days,
    trends_document,
)
from twinchat.domain.behaviour import features as behaviour_features
from twinchat.domain.campaign import (
    BEHAVIOUR_WEIGHT as OFFER_BEHAVIOUR_WEIGHT,
)
from twinchat.domain.campaign import (
    OFFER_PRIOR_VERSION,
    RESPONSES,
    Campaign,
    Variant,
    offer_fit,
    offer_prior,
)
from twinchat.domain.campaign import pool as offer_pool
from twinchat.domain.campaign import reason as offer_reason
from twinchat.domain.control import (
    LOCAL_CUSTOMER,
    LOCAL_MARKETING,
    LOCAL_RESEARCH,
    MARKETING,
    PURPOSES,
    SELF,
    AuditEntry,
    Consent,
    ConsentDenied,
    MemoryStatus,
    Use,
    check_purpose,
)
from twinchat.domain.corrections import (
    CorrectionResult,
    SurveyFix,
    correction_id,
    looks_like_correction,
    superseded_by,
    survey_fix,
)
from twinchat.domain.events import Event, EventError
from twinchat.domain.keys import PREFIX, ApiKey, check_role, digest, new_secret
from twinchat.domain.models import Answer, Memory, Message, Twin
from twinchat.domain.persona import PersonaPrompter, sanitize
from twinchat.domain.profile import Profile, ProfileVersionError, summarize, summary_author
from twinchat.domain.profile import update as update_profile
from twinchat.domain.prompts import PromptTemplate, load_prompt
from twinchat.domain.readers import RawRecord, RowProblem, UnreadableInput, count_rows, read_records
from twinchat.domain.retrieval import LexicalIndexCache, RetrievalPolicy, ScoredMemory, tokenize
from twinchat.domain.sessions import Session, Turn, new_session_id, now
from twinchat.domain.survey import (
    AnswerMatrix,
    ChoiceAnswer,
    ChoiceModel,
    Part,
    Question,
    SurveyAnswer,
    Weights,
    survey_answer_of,
)
from twinchat.importers.mapping import MappedImport
from twinchat.ports import (
    ChatModel,
    Embedder,
    KeyStore,
    LifetimeModel,
    MemoryStore,
    TokenCounter,
    TwinRegistry,
)


class SessionNotFound(LookupError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r}; start one with `twinchat chat TWIN_ID`")
        self.session_id = session_id


class MemoryNotFound(LookupError):
    def __init__(self, twin_id: str, event_id: str) -> None:
        super().__init__(
            f"twin {twin_id} has no memory {event_id!r}; `twinchat memories {twin_id}` lists them"
        )
        self.twin_id, self.event_id = twin_id, event_id


class KeyNotFound(LookupError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no active key {key_id!r}; `twinchat keys list` shows them")
        self.key_id = key_id


class TwinNotFound(LookupError):
    def __init__(self, twin_id: str) -> None:
        super().__init__(f"no twin {twin_id!r}; `twinchat twins` lists them")
        self.twin_id = twin_id


@dataclass
class IngestReport:
    """What an ingestion did: every row is stored, a duplicate, or rejected with its reason."""

    rows_read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    twins_touched: set[str] = field(default_factory=set)
    new_twins: set[str] = field(default_factory=set)

    @property
    def exit_code(self) -> int:
        """0: every row stored (or already there); 1: some rows rejected; 2: some input unreadable."""
        return 2 if self.unreadable else 1 if self.rejected else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": [
                {"file": p.file, "line": p.line, "item": p.item, "field": p.field, "reason": p.reason}
                for p in self.rejected
            ],
            "unreadable": self.unreadable,
            "twins_touched": len(self.twins_touched),
            "new_twins": len(self.new_twins),
            "exit_code": self.exit_code,
        }


Records = Iterable[RawRecord | RowProblem]
T = TypeVar("T")

# A stream's last batch of at least this many events is split in two (TwinService._batches), and its second
# part again while it is this long: a shorter write ends before a split would pay for itself.
LAST_BATCH_SPLIT = 256
# What an erased twin's id becomes in the audit rows kept about it (the prefix of a random tombstone).
TOMBSTONE_PREFIX = "erased-"


class TwinService:
    """Ingest, list and ask twins.

    >>> from twinchat.testing import FakeChatModel, HashEmbedder, InMemoryStore, WordCounter
    >>> ...  # see tests/unit/test_services.py for a complete, runnable setup
    Ellipsis
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: MemoryStore | Callable[[], MemoryStore],
        registry: TwinRegistry,
        counter: TokenCounter,
        chat_model: ChatModel | Callable[[], ChatModel],
        keys: KeyStore | None = None,
        embed_ahead: Callable[[Sequence[str]], Future[None]] | None = None,
    ) -> None:
        """``store``: the store, or how to open it on first use; ``embed_ahead``: how an import encodes a batch
        before the store is open (:meth:`MemoryStore.embed_ahead` of the store's own embeddings; by default the
        store's, opening it)."""
        self.settings = settings
        self._store = store
        self._store_lock = threading.Lock()
        self.registry = registry
        self.counter = counter
        self._chat_model = chat_model
        self._keys = keys
        self._embed_texts_ahead = embed_ahead

    @property
    def store(self) -> MemoryStore:
        """The memory store, opened on first use: an import reads its file and starts encoding meanwhile."""
        return self.open_store()

    @store.setter
    def store(self, store: MemoryStore) -> None:
        self._store = store
        self._embed_texts_ahead = None

    def open_store(self) -> MemoryStore:
        """Open the store now, rather than on first use: a server fails at its start on a store it cannot open."""
        if not isinstance(self._store, MemoryStore):
            with self._store_lock:
                if not isinstance(self._store, MemoryStore):
                    self._store = self._store()
        return self._store

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder: Embedder | None = None) -> TwinService:
        from twinchat import factory

        embedder = embedder or factory.make_embedder(settings)
        # The store opens on first use (importing Chroma takes a second): an import encodes its first batch
        # into the embeddings' cache meanwhile, which the store then reads.
        embeddings = factory.make_embeddings(settings, embedder)
        return cls(
            settings,
            store=lambda: factory.make_store(settings, embedder, embeddings=embeddings),
            embed_ahead=embeddings.embed_ahead,
            registry=factory.make_registry(settings),
            counter=factory.make_token_counter(),
            chat_model=lambda: factory.make_chat_model(settings),
            keys=factory.make_keys(settings),
        )

    @cached_property
    def chat_model(self) -> ChatModel:
        return self._chat_model if isinstance(self._chat_model, ChatModel) else self._chat_model()

    @cached_property
    def prompter(self) -> PersonaPrompter:
        template = load_prompt(self.settings.prompts_dir, "persona", required=("system", "user", "abstain"))
        return PersonaPrompter(
            template,
            self.counter,
            context_tokens=self.settings.context_tokens,
            answer_tokens=self.settings.max_answer_tokens,
        )

    # --- ingestion -----------------------------------------------------------------------------------

    def ingest_files(
        self,
        paths: Sequence[Path],
        *,
        source: str | None = None,
        panel: str | None = None,
        progress: bool = True,
    ) -> IngestReport:
        report = IngestReport()
        for path in paths:
            try:
                total = count_rows(path) if path.is_file() else None
                self.ingest_records(
                    read_records(path),
                    source=source,
                    panel=panel,
                    report=report,
                    progress=progress,
                    total=total,
                    label=path.name,
                )
            except UnreadableInput as exc:
                report.unreadable.append(str(exc))
        return report

    def ingest_records(
        self,
        records: Records,
        *,
        source: str | None = None,
        panel: str | None = None,
        report: IngestReport | None = None,
        progress: bool = False,
        total: int | None = None,
        label: str = "events",
        audit_as: str | None = "ingest",
        synthetic: bool = False,
    ) -> IngestReport:
        """Validate and store records in batches; every valid record is stored even when others are bad.

        The audit records each twin's new events under ``audit_as`` (None: the caller audits them).
        ``synthetic``: the records are generated (twinchat.synth), and the twins they create are labelled so;
        records for a twin of the other kind are rejected, so real and synthetic histories never mix.
        """
        report = report or IngestReport()
        batches = self._batches(
            _progress(records, enabled=progress, total=total, label=label), report, source=source
        )
        # Each batch's new texts are queued on the encoder by a thread of their own while the batch before is
        # written: the encoder releases the GIL as it runs, so encoding and Chroma's writes overlap, and a batch's
        # texts are queued while the batch before still encodes, so the encoder does not wait between batches.
        # The writes stay in order, in this thread; the encoding thread only reads the store and queues texts
        # whose vectors fill the embeddings' cache.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="twinchat-encode") as encoder:
            queued: list[Future[Future[None]]] = []
            try:
                previous: list[tuple[RawRecord, Event]] | None = None
                for batch in batches:
                    queued.append(encoder.submit(self._embed_ahead, batch))
                    if previous is None:
                        # The store opens once the first batch is on the encoder (its model loaded: importing
                        # both at once from two threads can break numpy's), while it encodes; a store that
                        # cannot open fails the import now.
                        queued[-1].result()
                        self.open_store()
                    else:
                        queued[-2].result().result()
                        self._store_batch(previous, panel, report, audit_as, synthetic)
                    previous = batch
                if previous is not None:
                    queued[-1].result().result()
                    self._store_batch(previous, panel, report, audit_as, synthetic)
            except BaseException:
                # Nothing more to encode: the batches not written yet are not written.
                encoder.shutdown(cancel_futures=True)
                for queuing in queued:
                    if not queuing.cancelled() and queuing.exception() is None:
                        queuing.result().cancel()
                raise
        return report

    def _batches(
        self, records: Records, report: IngestReport, *, source: str | None
    ) -> Iterator[list[tuple[RawRecord, Event]]]:
        """The valid records as events, in batches of TWINCHAT_BATCH_SIZE; the invalid ones reported."""
        batch: list[tuple[RawRecord, Event]] = []
        for item in records:
            report.rows_read += 1
            if isinstance(item, RowProblem):
                report.rejected.append(item)
                continue
            try:
                event = Event.from_record(item.record, default_source=source)
            except EventError as exc:
                report.rejected.append(RowProblem(item.file, item.line, exc.field, exc.reason, item.item))
                continue
            batch.append((item, event))
            if len(batch) >= self.settings.batch_size:
                yield batch
                batch = []
        # The last batch's write is the one part of an import that no encoding overlaps. Its last fifth goes as
        # a batch of its own, and that fifth's last fifth, and so on: encoding a fifth takes about as long as
        # writing the rest (an event's encoding costs 4-5 times its write on a CPU), and only a short write is
        # left at the end.
        while len(batch) >= LAST_BATCH_SPLIT:
            cut = len(batch) - len(batch) // 5
            yield batch[:cut]
            batch = batch[cut:]
        if batch:
            yield batch

    def _embed_ahead(self, batch: list[tuple[RawRecord, Event]]) -> Future[None]:
        """Queue the batch's texts that the store does not hold yet on the encoder (a re-run encodes nothing);
        the future is done when their vectors are ready. Only a forecast: :meth:`_store_batch` decides what is
        new once the batches before it are written.

        Only the twins the registry knows are looked for in the store, so that a first import's first batch
        encodes before the store has opened. A run killed between its store write and its registry write left
        events of unknown twins stored: their batch is encoded again when the run is, and not stored twice.
        """
        ids: dict[str, list[str]] = {}
        for _, event in batch:
            ids.setdefault(event.customer_id, []).append(event.event_id)
        known = self.registry.get_many(list(ids))
        ids = {t: e for t, e in ids.items() if known[t] is not None}
        stored = self.store.stored_texts_many(ids) if ids else {}
        new = list(dict.fromkeys(e.text for _, e in batch if e.event_id not in stored.get(e.customer_id, {})))
        return (self._embed_texts_ahead or self.store.embed_ahead)(new)

    def _store_batch(
        self,
        batch: list[tuple[RawRecord, Event]],
        panel: str | None,
        report: IngestReport,
        audit_as: str | None,
        synthetic: bool = False,
    ) -> None:
        by_twin: dict[str, list[tuple[RawRecord, Event]]] = {}
        for raw, event in batch:
            by_twin.setdefault(event.customer_id, []).append((raw, event))
        twins = self.registry.get_many(list(by_twin))
        for twin_id, twin in twins.items():
            if twin is not None and twin.synthetic != synthetic:
                kind = "synthetic" if twin.synthetic else "a real customer's"
                for raw, _ in by_twin.pop(twin_id):
                    report.rejected.append(
                        RowProblem(
                            raw.file,
                            raw.line,
                            "customer_id",
                            f"{twin_id!r} is {kind} twin; real and synthetic histories are never mixed",
                            raw.item,
                        )
                    )
        known = {t: twins[t] is not None for t in by_twin}
        fresh: dict[str, list[Event]] = {}
        # Event ids found stored already: by this run's earlier batches, an earlier run, or a killed run.
        already: dict[str, list[str]] = {}
        # Twins the registry does not know are checked too: a run killed after its store write left them there.
        stored_by_twin = self.store.stored_texts_many(
            {t: [e.event_id for _, e in i] for t, i in by_twin.items()}
        )
        for twin_id, items in by_twin.items():
            stored = stored_by_twin[twin_id]
            for raw, event in items:
                previous = stored.get(event.event_id)
                if previous is None:
                    fresh.setdefault(twin_id, []).append(event)
                    stored[event.event_id] = event.text  # a repeat later in the same batch is a duplicate
                elif previous == event.text:
                    report.duplicates += 1
                    already.setdefault(twin_id, []).append(event.event_id)
                else:
                    # Never overwrite what is stored: the record is refused, the stored event kept.
                    report.rejected.append(
                        RowProblem(
                            raw.file,
                            raw.line,
                            "event_id",
                            f"{event.event_id!r} is already stored with a different text; give this event its own id",
                            raw.item,
                        )
                    )
        # The writes are ordered, and each is idempotent or derived from what the store holds, so that a run
        # killed between any two of them heals when it is run again (tests/integration/test_crash_safety.py).
        # Structured answers first: idempotent by event id.
        self.registry.add_survey_answers(
            [a for events in fresh.values() for e in events if (a := survey_answer_of(e)) is not None]
        )
        # Default consents before the twin exists in the registry: once it does, a re-run sees it as known.
        created = [t for t, was_known in known.items() if not was_known]
        if created:
            at = now()
            self.registry.set_consents(
                [
                    Consent(t, p, True, at, "default at ingest")
                    for t in created
                    for p in self.settings.default_consent
                ],
                only_if_absent=True,
            )
        self.store.add_many(fresh)
        report.stored += sum(len(events) for events in fresh.values())
        self._settle({t: twins[t] for t in by_twin}, fresh, panel=panel, synthetic=synthetic)
        report.twins_touched.update(by_twin)
        report.new_twins.update(created)
        if audit_as is not None:
            unaudited = self._unaudited(already) if already else {}
            self.registry.record(
                [
                    AuditEntry(now(), audit_as, "ingest", t, SELF, ids, {"stored": len(ids)})
                    for t in sorted(set(fresh) | set(unaudited))
                    if (ids := [e.event_id for e in fresh.get(t, [])] + unaudited.get(t, []))
                ]
            )

    def _settle(
        self,
        twins: dict[str, Twin | None],
        fresh: dict[str, list[Event]],
        *,
        panel: str | None,
        synthetic: bool,
    ) -> None:
        """Write each twin's count and profile as derived from the store, until the store holds still.

        ``twins``: the batch's twins as the registry had them before the batch. Counts are read back from the
        store rather than added up, so a run killed after the store write heals when run again. Another
        process (an API worker) may store events for the same twin and write a count it read before ours:
        whoever writes last counts again after writing, and writes again when the count moved.
        """
        counts = self.store.counts(list(twins))
        due = {
            t: n
            for t, n in counts.items()
            if (twin := twins[t]) is None or twin.n_events != n or t in fresh or panel is not None
        }
        for _ in range(5):
            self.registry.touch_twins(due, panel=panel, synthetic=synthetic)
            self._update_profiles(fresh, counts)
            moved = {t: n for t, n in self.store.counts(list(due)).items() if n != due[t]}
            if not moved:
                return
            counts = due = moved
            fresh = {}  # the profiles of the twins that moved are rebuilt from the store

    def _unaudited(self, stored: dict[str, list[str]]) -> dict[str, list[str]]:
        """Of events found already stored, those no ingestion audit entry names: stored by a run killed before
        it wrote its audit. Twins audited before entries named their events are left as they are."""
        missing: dict[str, list[str]] = {}
        for twin_id, event_ids in stored.items():
            named: set[str] = set()
            for entry in self.registry.audit_entries(twin_id=twin_id):
                if entry.action == "ingest":
                    if not entry.evidence and entry.detail.get("stored"):
                        named = set(event_ids)  # an entry from before events were named: cannot tell
                        break
                    named.update(entry.evidence)
                elif entry.action == "correct" and "correction" in entry.detail:
                    named.add(entry.detail["correction"])
            if gap := [e for e in event_ids if e not in named]:
                missing[twin_id] = gap
        return missing

    def import_mapped(
        self, importer: MappedImport, *, panel: str | None = None, progress: bool = False
    ) -> dict[str, Any]:
        """Run a mapping import: resolve identities against the twins already stored, store the events,
        record each twin's identifiers, and return (and keep under TWINCHAT_HOME/imports) the quality report."""
        import json
        import time

        from twinchat.importers.quality import quality_report

        started, clock = now(), time.perf_counter()
        importer.known = self.registry.twins_by_identifier
        importer.existing = self._existing_twins
        ingest = IngestReport()
        try:
            self.ingest_records(
                importer.records(), panel=panel, report=ingest, progress=progress, label=importer.mapping.name
            )
        except UnreadableInput as exc:
            ingest.unreadable.append(str(exc))
        identifiers = importer.identifiers_by_twin(ingest.twins_touched)
        self.registry.add_identifiers(identifiers, origin=f"import:{importer.mapping.name}")
        report = quality_report(
            importer, ingest, identifiers, panel=panel, started=started, seconds=time.perf_counter() - clock
        )
        folder = self.settings.home / "imports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{started.strftime('%Y%m%dT%H%M%S.%fZ')}-{importer.mapping.name}.json"
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        report["saved_to"] = str(path)
        return report

    def _existing_twins(self, twin_ids: list[str]) -> set[str]:
        wanted = set(twin_ids)
        return {t.twin_id for t in self.registry.list_twins()} & wanted if wanted else set()

    def identifiers(self, twin_id: str) -> list[dict[str, str]]:
        """The identifiers the twin's records arrived under (customer id, email, phone)."""
        self.twin(twin_id)
        return [{"kind": k, "value": v} for k, v in self.registry.identifiers_of(twin_id)]

    # --- twins ---------------------------------------------------------------------------------------

    def twins(self, *, panel: str | None = None) -> list[Twin]:
        return self.registry.list_twins(panel=panel)

    def twin(self, twin_id: str) -> Twin:
        twin = self.registry.get(twin_id)
        if twin is None:
            raise TwinNotFound(twin_id)
        return twin

    # --- profiles -------------------------------------------------------------------------------------

    @cached_property
    def profile_template(self) -> PromptTemplate:
        return load_prompt(self.settings.prompts_dir, "profile", required=("summary",))

    def profile(self, twin_id: str) -> Profile:
        """The twin's derived facts and persona summary (twinchat.domain.profile).

        Normally maintained at ingestion; rebuilt here from the stored events once when it is missing or
        behind (a twin stored before profiles existed, or by a run stopped between writes).
        """
        twin = self.twin(twin_id)
        profile = self._stored_profile(twin_id)
        if profile is None or profile.n_events != twin.n_events:
            profile = self._summarized(update_profile(Profile(), self.store.events(twin_id)))
        elif profile.summary_by != summary_author(self.profile_template):
            profile = self._summarized(profile)  # the summary template changed: rewrite from the same facts
        else:
            return profile
        self.registry.save_profile(twin_id, profile.to_dict())
        return profile

    def _update_profiles(self, fresh: dict[str, list[Event]], counts: dict[str, int]) -> None:
        """Bring the profiles of these twins up to their stored event ``counts``: fold in the just-stored
        ``fresh`` events when the profile held all the others (the cost follows the new events only),
        otherwise rebuild it from the store, once."""
        stored = self.registry.get_profiles(list(counts))
        updated: dict[str, dict[str, Any]] = {}
        for twin_id, count in counts.items():
            profile = _profile_from(stored.get(twin_id))
            if count == 0 or (profile is not None and profile.n_events == count):
                continue  # up to date, whoever wrote it: this process or another that stored later
            events = fresh.get(twin_id, [])
            if profile is None and len(events) == count:
                profile = update_profile(Profile(), events)  # a new twin: its events are all here
            elif profile is not None and events and profile.n_events + len(events) == count:
                profile = update_profile(profile, events)
            else:
                # The profile missed events: stored before profiles existed, under another profile version,
                # by a run killed before this write, or by another process at the same time.
                profile = update_profile(Profile(), self.store.events(twin_id))
            updated[twin_id] = self._summarized(profile).to_dict()
        self.registry.save_profiles(updated)

    def _stored_profile(self, twin_id: str) -> Profile | None:
        return _profile_from(self.registry.get_profile(twin_id))

    def _summarized(self, profile: Profile) -> Profile:
        # The hook for an LLM-written summary: with a capable model configured, write it here from
        # profile.facts(), keep the template's text as the fallback, and name the model in summary_by. The
        # bundled 135M model is not asked: it invents facts.
        template = self.profile_template
        return replace(profile, summary=summarize(profile, template), summary_by=summary_author(template))

    def panels(self) -> dict[str, int]:
        return self.registry.panels()

    def set_panel(self, panel: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> dict[str, int]:
        """Put existing twins into a panel or take them out; unknown twins are refused, nothing changed."""
        if not panel.strip():
            raise ValueError("panel: a name is required")
        missing = [t for t in [*add, *remove] if self.registry.get(t) is None]
        if missing:
            raise TwinNotFound(", ".join(missing))
        self.registry.set_panel(panel, add=add, remove=remove)
        return self.registry.panels()

    # --- the customer in control -----------------------------------------------------------------------

    def authorize(self, twin_id: str, use: Use, action: str) -> Twin:
        """The twin, if its customer consents to this use; otherwise ConsentDenied, and the refusal audited."""
        twin = self.twin(twin_id)
        check_purpose(use.purpose)
        if use.purpose == SELF or twin.synthetic:
            return twin
        consent = self.registry.consents_of(twin_id).get(use.purpose)
        if consent is None or not consent.granted:
            self._audit(use, "refused", twin_id, [], attempted=action)
            raise ConsentDenied(twin_id, use.purpose, consent)
        return twin

    # --- behaviour predictions --------------------------------------------------------------------------

    @cached_property
    def lifetime_model(self) -> LifetimeModel:
        from twinchat.adapters.bgnbd import BgNbdModel  # numpy and scipy, loaded only when predicting

        return BgNbdModel()

    def fit_lifetime(
        self, *, panel: str | None = None, progress: bool = False, use: Use = LOCAL_MARKETING
    ) -> LifetimeFit:
        """Fit the customer-lifetime model on a panel's purchase histories (every real twin when None).

        Only twins whose customers consent to marketing are used, and each is audited as used by the fit;
        predictions are made as of the panel's last purchase day, stored with the fit.
        """
        twins = [t for t in self.registry.list_twins(panel=panel) if panel is not None or not t.synthetic]
        allowed = [t.twin_id for t in twins if t.synthetic or self._consents_to(t.twin_id, MARKETING)]
        histories = {}
        for twin_id in _progress(allowed, enabled=progress, total=len(allowed), label="fit", unit="twin"):
            days = purchase_days(self._valid_events(twin_id))
            if days:
                histories[twin_id] = days
        if not histories:
            raise ValueError(f"no purchases to fit on in {f'panel {panel!r}' if panel else 'any twin'}")
        as_of = max(days[-1].day for days in histories.values())
        panel_features = [f for days in histories.values() if (f := behaviour_features(days, as_of=as_of))]
        fit = self.lifetime_model.fit(panel_features, panel_name=panel)
        path = self._fit_path(panel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fit.to_dict(), indent=2) + "\n", encoding="utf-8")
        self.registry.record(
            [
                AuditEntry(now(), use.actor, "fit", t, MARKETING, [], {"model": fit.model, "panel": panel})
                for t in histories
            ]
        )
        return fit

    def lifetime_fit(self, twin_id: str) -> LifetimeFit | None:
        """The stored fit a twin is predicted with: its first panel's that has one, else every twin's."""
        for panel in [*sorted(self.twin(twin_id).panels), None]:
            path = self._fit_path(panel)
            if path.is_file():
                return LifetimeFit.from_dict(json.loads(path.read_text(encoding="utf-8")))
        return None

    def predictions(
        self, twin_id: str, *, horizon_days: int = HORIZON_DAYS, use: Use = LOCAL_MARKETING
    ) -> dict[str, Any]:
        """The twin's behaviour predictions (twinchat.domain.behaviour), recomputed from its current events.

        A use for marketing: refused (ConsentDenied, and audited) without the customer's consent.
        """
        self.authorize(twin_id, use, "predict")
        days = purchase_days(self._valid_events(twin_id))
        fit = self.lifetime_fit(twin_id)
        if not days:
            document = not_available("not enough history: this customer has no purchases")
        elif fit is None:
            document = not_available(
                "no lifetime model fitted yet: run `twinchat predict fit` (or with --panel)",
                category_trends=trends_document(category_trends(days)),
            )
        else:
            # As of the fit's last day, or the twin's own later purchases: histories are often years old, and
            # the calendar would call every customer lost; a prediction changes when events arrive, not daily.
            as_of = max(fit.observed_until, days[-1].day)
            f = behaviour_features(days, as_of=as_of)
            assert f is not None
            forecast = self.lifetime_model.forecast(fit, f, horizon_days=horizon_days)
            document = predictions_document(f, forecast, fit, category_trends(days))
        evidence = [e for d in days for e in d.event_ids]
        self._audit(use, "predict", twin_id, evidence, available=document["available"])
        return document

    def _fit_path(self, panel: str | None) -> Path:
        name = "all" if panel is None else "panel-" + re.sub(r"[^A-Za-z0-9_.-]", "_", panel)
        return self.settings.home / "models" / f"lifetime-{name}.json"

    def _valid_events(self, twin_id: str) -> list[Event]:
        invalid = set(self.registry.memory_statuses(twin_id))
        return [e for e in self.store.events(twin_id) if e.event_id not in invalid]

    def _consents_to(self, twin_id: str, purpose: str) -> bool:
        consent = self.registry.consents_of(twin_id).get(purpose)
        return consent is not None and consent.granted

    def _audit(self, use: Use, action: str, twin_id: str, evidence: Sequence[str], **detail: Any) -> None:
        self.registry.record(
            [AuditEntry(now(), use.actor, action, twin_id, use.purpose, list(evidence), detail)]
        )

    def consents(self, twin_id: str) -> dict[str, Consent | None]:
        self.twin(twin_id)
        recorded = self.registry.consents_of(twin_id)
        return {p: recorded.get(p) for p in PURPOSES}

    def set_consent(self, twin_id: str, purpose: str, granted: bool, *, use: Use = LOCAL_CUSTOMER) -> Consent:
        """Grant or withdraw consent for a purpose; it takes effect for the very next use."""
        self.twin(twin_id)
        if purpose not in PURPOSES:
            raise ValueError(f"purpose: {purpose!r} is not one of {', '.join(PURPOSES)}")
        consent = Consent(twin_id, purpose, granted, now(), use.actor)
        self.registry.set_consents([consent])
        self._audit(use, "consent", twin_id, [], purpose=purpose, granted=granted)
        return consent

    def correct(self, twin_id: str, statement: str, *, use: Use = LOCAL_CUSTOMER) -> CorrectionResult:
        """Store the customer's statement as an authoritative memory; supersede the memories it contradicts."""
        self.authorize(twin_id, use, "correct")
        statement = " ".join(statement.split())
        if not statement:
            raise ValueError("statement: must not be empty")
        at = now()
        event_id = correction_id(twin_id, statement, at)
        # Without an LLM judge a survey answer is replaced only by an answer to its own question (below): similar
        # wording would otherwise take neighbouring questions with it ("ever been divorced?" for "I am divorced").
        candidates = [
            m
            for m in self.retrieve(twin_id, statement)
            if self._judge_enabled or survey_answer_of(m.event) is None
        ]
        superseded = [m.event.event_id for m in superseded_by(statement, candidates, judge=self._judge)]
        fix = self._survey_fix(twin_id, statement)
        record: dict[str, Any] = {
            "customer_id": twin_id,
            "event_id": event_id,
            "text": statement,
            "timestamp": at.isoformat(),
            "source": "correction",
            "kind": "correction",
            "importance": 1.0,
            "corrected_by": use.actor,
        }
        if fix is not None:
            record.update(question_id=fix.key, question=fix.question, answer=fix.answer)
            superseded += [e for e in fix.replaces if e not in superseded]
        report = self.ingest_records([RawRecord("correction", None, record)], audit_as=None)
        if report.rejected:
            raise ValueError(f"statement: {report.rejected[0].reason}")
        self.registry.set_memory_status(
            [
                MemoryStatus(twin_id, e, "superseded", at, event_id, "contradicted by a correction")
                for e in superseded
            ]
        )
        self._lexical_indexes.drop(twin_id)
        self._audit(use, "correct", twin_id, superseded, correction=event_id)
        return CorrectionResult(twin_id, event_id, statement, superseded, fix)

    def forget(self, twin_id: str, event_id: str, *, use: Use = LOCAL_CUSTOMER) -> None:
        """Remove one memory at the customer's request; a tombstone records when and by whom, not what."""
        self.authorize(twin_id, use, "forget")
        if not self.store.stored_texts(twin_id, [event_id]):
            raise MemoryNotFound(twin_id, event_id)
        self.store.delete_events(twin_id, [event_id])
        self.registry.delete_survey_answers(twin_id, [event_id])
        self.registry.set_memory_status([MemoryStatus(twin_id, event_id, "forgotten", now(), use.actor, "")])
        self.registry.touch_twins({twin_id: self.store.count(twin_id)})
        self._lexical_indexes.drop(twin_id)
        self._audit(use, "forget", twin_id, [event_id])

    def memories(
        self,
        twin_id: str,
        *,
        search: str | None = None,
        include_invalid: bool = True,
        use: Use = LOCAL_CUSTOMER,
    ) -> list[dict[str, Any]]:
        """What the twin knows: its memories with source and validity, newest first, optionally searched."""
        self.authorize(twin_id, use, "memories")
        statuses = self.registry.memory_statuses(twin_id)
        events = self.store.events(twin_id)
        if search:
            words = set(tokenize(search))
            ranked = {
                m.event.event_id
                for m in self.store.search(twin_id, search, k=len(events) or 1)
                if m.score >= 0.3
            }
            events = [e for e in events if e.event_id in ranked or words & set(tokenize(e.text))]
        rows = []
        for event in sorted(events, key=lambda e: (e.timestamp is not None, e.timestamp), reverse=True):
            status = statuses.get(event.event_id)
            if status is not None and not include_invalid:
                continue
            rows.append(
                {
                    **event.to_record(),
                    "valid": status is None,
                    **({"status": status.to_dict()} if status else {}),
                }
            )
        return rows

    def export(self, twin_id: str, *, use: Use = LOCAL_CUSTOMER) -> dict[str, Any]:
        """Everything held about the customer, machine readable."""
        twin = self.authorize(twin_id, use, "export")
        statuses = self.registry.memory_statuses(twin_id)
        events = self.store.events(twin_id)
        self._audit(use, "export", twin_id, [])
        sessions = self.registry.sessions_of(twin_id)
        return {
            "format": "twinchat-export/1",
            "exported_at": now().isoformat(),
            "twin": twin.to_dict(),
            "consents": {p: c.to_dict() if c else None for p, c in self.consents(twin_id).items()},
            "events": [
                {
                    **e.to_record(),
                    "valid": e.event_id not in statuses,
                    **({"status": statuses[e.event_id].to_dict()} if e.event_id in statuses else {}),
                }
                for e in events
            ],
            "corrections": [e.to_record() for e in events if e.source == "correction"],
            "forgotten": [m.to_dict() for m in statuses.values() if m.state == "forgotten"],
            "survey_answers": [
                {"question_id": a.key, "question": a.question, "answer": a.answer, "event_id": a.event_id}
                for a in self.registry.survey_answers(twin_ids=[twin_id])
            ],
            "identifiers": [{"kind": k, "value": v} for k, v in self.registry.identifiers_of(twin_id)],
            "profile": self.profile(twin_id).to_dict(),
            "sessions": [sess.to_dict() for sess in sessions],
            "audit": [e.to_dict() for e in self.registry.audit_entries(twin_id=twin_id)],
        }

    def erase(self, twin_id: str, *, use: Use = LOCAL_CUSTOMER) -> str:
        """Erase the customer: collection, metadata, derived data and caches. Returns the audit tombstone."""
        self.authorize(twin_id, use, "erase")
        tombstone = f"{TOMBSTONE_PREFIX}{new_session_id().removeprefix('ses_')}"
        texts = [e.text for e in self.store.events(twin_id)]
        self.store.delete_twin(twin_id)
        self.registry.erase_twin(twin_id, tombstone=tombstone)
        from twinchat.jobs import erase_twin, jobs_folder

        erase_twin(jobs_folder(self.settings), twin_id)  # its answers in downloadable survey results
        if self._keys is not None:
            self._keys.delete_for_twin(twin_id)
        self._lexical_indexes.drop(twin_id)
        forget_texts = getattr(getattr(self.store, "embeddings", None), "forget", None)
        if forget_texts is not None:
            forget_texts(texts)
        self.registry.record([AuditEntry(now(), use.actor, "erase", tombstone, use.purpose, [], {})])
        compact = getattr(self.registry, "vacuum", None)
        if compact is not None:
            compact()
        return tombstone

    def audit(self, *, twin_id: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        return self.registry.audit_entries(twin_id=twin_id, limit=limit)

    def _judge(self, old: str, new: str) -> bool | None:
        """With a capable model: does the new statement contradict or replace the old memory? (yes/no)"""
        if not self._judge_enabled:
            return None
        messages = [
            Message("system", "You compare two statements about one customer. Answer Yes or No."),
            Message(
                "user",
                f"Earlier record: {sanitize(old)}\nCustomer now says: {sanitize(new)}\n"
                "Does the new statement contradict or replace the earlier record?",
            ),
        ]
        scores = self.chat_model.score_options(messages, ["Yes", "No"])
        if scores is not None:
            return scores["Yes"] >= scores["No"]
        reply = self.chat_model.complete(messages, max_tokens=3, temperature=0.0).strip().lower()
        return True if reply.startswith("yes") else False if reply.startswith("no") else None

    @property
    def _judge_enabled(self) -> bool:
        setting = self.settings.correction_judge
        return setting == "llm" or (setting == "auto" and self.settings.llm.startswith("openai:"))

    def _survey_fix(self, twin_id: str, statement: str) -> SurveyFix | None:
        """The survey question a correction answers: one the twin or its panels were asked, naming a label."""
        # The answer labels a question has: those its panels gave, or anyone's for a twin in no panel.
        panels = self.twin(twin_id).panels
        scope = sorted({t.twin_id for p in panels for t in self.registry.list_twins(panel=p)} | {twin_id})
        answers = self.registry.survey_answers(twin_ids=scope if panels else None, valid_only=True)
        if not answers:
            return None
        questions: dict[str, tuple[str, set[str]]] = {}
        own: dict[str, list[str]] = {}
        for a in answers:
            questions.setdefault(a.key, (a.question, set()))[1].add(a.answer)
            if a.twin_id == twin_id:
                own.setdefault(a.key, []).append(a.event_id)
        embedder = getattr(getattr(self.store, "embeddings", None), "embedder", None) or getattr(
            self.store, "embedder", None
        )

        def similarity(text: str, others: Sequence[str]) -> list[float]:
            if embedder is None:
                words = set(tokenize(text))
                return [len(words & set(tokenize(o))) / (len(set(tokenize(o))) or 1) for o in others]
            vectors = embedder.embed_batch([text, *others])
            return [sum(a * b for a, b in zip(vectors[0], v, strict=True)) for v in vectors[1:]]

        return survey_fix(statement, questions, own, similarity)

    # --- API keys --------------------------------------------------------------------------------------

    @property
    def keys(self) -> KeyStore:
        if self._keys is None:
            raise RuntimeError("this service has no key store; build it with TwinService.from_settings")
        return self._keys

    def create_key(
        self, role: str, *, twin_id: str | None = None, label: str = "", use: Use = LOCAL_CUSTOMER
    ) -> tuple[ApiKey, str]:
        """A new API key and its secret, which is shown this once and stored only as a digest."""
        check_role(role, twin_id)
        if twin_id is not None:
            self.twin(twin_id)
        key_id, secret = new_secret()
        key = ApiKey(key_id, role, now(), twin_id, label)
        self.keys.add(key, digest(secret))
        self._audit(use, "key", twin_id or "-", [], key_id=key_id, role=role)
        return key, secret

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key with this secret, or None."""
        key = self.keys.by_digest(digest(secret)) if secret.startswith(PREFIX) else None
        return key if key is not None and key.active else None

    def revoke_key(self, key_id: str, *, use: Use = LOCAL_CUSTOMER) -> None:
        """Revoke a key; requests with it are refused (401) from then on."""
        if not self.keys.revoke(key_id, now()):
            raise KeyNotFound(key_id)
        self._audit(use, "revoke", "-", [], key_id=key_id)

    # --- conversations ---------------------------------------------------------------------------------

    def start_session(self, twin_id: str) -> Session:
        self.twin(twin_id)
        session = Session(new_session_id(), twin_id, now())
        self.registry.create_session(session)
        return session

    def session(self, session_id: str) -> Session:
        session = self.registry.get_session(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def chat_stream(
        self, session_id: str, message: str, *, use: Use = LOCAL_RESEARCH
    ) -> Iterator[str | Answer]:
        """One turn of a conversation: streamed like ask_stream, remembered in the session afterwards.

        A customer talking to their own twin (purpose ``self``) corrects it by saying so ("Actually, I ...").
        """
        session = self.session(session_id)
        asked = now()
        answer: Answer | None = None
        if use.purpose == SELF and looks_like_correction(message):
            result = self.correct(session.twin_id, message, use=use)
            replaced = len(result.superseded)
            text = f"Thank you, I'll remember that: {message.strip()}" + (
                f" (it replaces {replaced} earlier {'memory' if replaced == 1 else 'memories'})"
                if replaced
                else ""
            )
            answer = Answer(session.twin_id, text, [], abstained=False, model="correction", simulated=False)
            parts: Iterable[str | Answer] = [text, answer]
        else:
            parts = self.ask_stream(
                session.twin_id,
                message,
                conversation=session.conversation(),
                query=session.retrieval_query(message),
                use=use,
                action="chat",
            )
        for part in parts:
            if isinstance(part, Answer):
                answer = part
            yield part
        assert answer is not None
        self.registry.append_turns(
            session_id,
            [
                Turn("user", message, asked),
                Turn("assistant", answer.answer, now(), [c.event_id for c in answer.citations]),
            ],
        )

    def chat(self, session_id: str, message: str, *, use: Use = LOCAL_RESEARCH) -> Answer:
        parts = list(self.chat_stream(session_id, message, use=use))
        answer = parts[-1]
        assert isinstance(answer, Answer)
        return answer

    # --- structured answers and surveys ---------------------------------------------------------------

    def choice_model(self, twin_ids: Sequence[str]) -> ChoiceModel:
        """The structured-answer model over the panels these twins belong to (every twin when in none)."""
        panels = {p for t in twin_ids for p in self.twin(t).panels}
        scope = sorted({t.twin_id for p in panels for t in self.registry.list_twins(panel=p)} | set(twin_ids))
        answers = self.registry.survey_answers(twin_ids=scope if panels else None, valid_only=True)
        scorer = self._score_options if self.survey_weights.llm > 0 else None
        return ChoiceModel(AnswerMatrix(answers), self.survey_weights, scorer=scorer)

    @cached_property
    def survey_weights(self) -> Weights:
        return Weights(llm=self.settings.survey_llm_weight)

    def _score_options(
        self, twin_id: str, question: Question, answers: list[SurveyAnswer]
    ) -> dict[str, float] | None:
        template = load_prompt(self.settings.prompts_dir, "choice", required=("system", "user"))
        clean = [
            SurveyAnswer(a.twin_id, a.key, sanitize(a.question), sanitize(a.answer), a.event_id)
            for a in answers
        ]
        messages = [
            Message("system", template.render("system", twin_id=sanitize(twin_id))),
            Message(
                "user",
                template.render(
                    "user",
                    answers=clean,
                    question=sanitize(question.text),
                    options=[sanitize(o) for o in question.options],
                ),
            ),
        ]
        return self.chat_model.score_options(messages, question.options)

    def choose(
        self, twin_id: str, question: Question, *, model: ChoiceModel | None = None, use: Use = LOCAL_RESEARCH
    ) -> ChoiceAnswer:
        """A multiple-choice answer with its distribution, reason, evidence, and the weight of each part."""
        self.authorize(twin_id, use, "choose")
        answer = (model or self.choice_model([twin_id])).choose(twin_id, question)
        self._audit(use, "choose", twin_id, [c.event_id for c in answer.citations], question_id=question.id)
        return answer

    def survey(
        self,
        questions: Sequence[Question],
        twin_ids: Sequence[str],
        *,
        progress: bool = False,
        use: Use = LOCAL_RESEARCH,
        refused: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One record per twin and question: choices with distributions, free questions answered in words.

        Twins whose customers have not consented to the purpose are refused: with a ``refused`` list they are
        left out and their refusals appended to it, without it the first refusal raises ConsentDenied.
        """
        allowed = []
        for t in twin_ids:
            try:
                self.authorize(t, use, "survey")
                allowed.append(t)
            except ConsentDenied as exc:
                if refused is None:
                    raise
                refused.append(str(exc))
        twin_ids = allowed
        model = self.choice_model(twin_ids) if any(q.is_structured for q in questions) else None
        pairs = [(t, q) for t in twin_ids for q in questions]
        for twin_id, question in _progress(
            pairs, enabled=progress, total=len(pairs), label="survey", unit="answer"
        ):
            structured = None
            if model is not None and question.is_choice:
                structured = model.choose(twin_id, question)
            elif model is not None and question.numeric:
                structured = model.estimate(twin_id, question)  # None: no numbers in the panel, ask in words
            if structured is not None:
                record = structured.to_dict()
                self._audit(
                    use,
                    "survey",
                    twin_id,
                    [c.event_id for c in structured.citations],
                    question_id=question.id,
                )
            else:
                answer = self.ask(twin_id, question.text, use=use)
                record = {
                    "twin_id": twin_id,
                    "question_id": question.id,
                    "answer": answer.answer,
                    "distribution": {},
                    "citations": [c.to_dict() for c in answer.citations],
                    "abstained": answer.abstained,
                    "simulated": True,
                }
            yield record

    # --- strategy tests --------------------------------------------------------------------------------

    def simulate(
        self,
        campaign: Campaign,
        twin_ids: Sequence[str],
        *,
        use: Use = LOCAL_MARKETING,
        progress: bool = False,
        respond: Callable[[str, Variant], Mapping[str, float]] | None = None,
        draws: int = strategy.DRAWS,
    ) -> dict[str, Any]:
        """Test a campaign's variants on twins: response rates with intervals, segments, the A/B difference.

        A marketing use: twins whose customers have not consented are left out and listed under ``refused``
        (and their refusals audited); every twin asked is audited with the evidence its responses cited.
        ``respond`` replaces how a twin responds (a distribution over RESPONSES): for tests with known
        answers. The result is the document `twinchat simulate` writes as results.json (twinchat.domain.strategy).
        """
        refused: list[dict[str, str]] = []
        allowed = []
        for t in dict.fromkeys(twin_ids):
            try:
                self.authorize(t, use, "simulate")
                allowed.append(t)
            except ConsentDenied as exc:
                refused.append({"twin_id": t, "reason": str(exc)})
        model = self.choice_model(allowed) if allowed and respond is None else None
        responses: list[strategy.TwinResponse] = []
        for twin_id in _progress(
            allowed, enabled=progress, total=len(allowed), label="simulate", unit="twin"
        ):
            context = self._offer_context(twin_id, campaign.segments)
            cited: list[str] = []
            for variant in campaign.variants:
                if respond is not None:
                    dist = {r: float(respond(twin_id, variant).get(r, 0.0)) for r in RESPONSES}
                    total = sum(dist.values()) or 1.0
                    dist = {r: v / total for r, v in dist.items()}
                    response = strategy.TwinResponse(
                        twin_id,
                        variant.key,
                        dist,
                        strategy.p_response(dist, campaign.responding),
                        "scripted response",
                        [],
                        [],
                        context.segments,
                    )
                else:
                    assert model is not None
                    response = self._offer_response(twin_id, campaign, variant, model, context)
                cited.extend(e["event_id"] for e in response.evidence)
                responses.append(response)
            self._audit(use, "simulate", twin_id, list(dict.fromkeys(cited)), campaign=campaign.name)
        summary = strategy.summarize(campaign, responses, draws=draws)
        return {
            "simulated": True,
            "campaign": campaign.to_dict(),
            "date": now().isoformat(),
            "purpose": use.purpose,
            "twins": {
                "asked": len(allowed) + len(refused),
                "answered": len(allowed),
                "refused": len(refused),
            },
            "refused": refused,
            "response": {"options": list(RESPONSES), "counted": list(campaign.responding)},
            **summary,
            "model": {
                "responses": "twinchat.domain.campaign: behaviour part (offer_prior "
                f"v{OFFER_PRIOR_VERSION}) pooled with the choice model's parts where the panel answered before"
                if respond is None
                else "scripted",
                "behaviour_weight": OFFER_BEHAVIOUR_WEIGHT,
                "choice_weights": self.survey_weights.to_dict(),
                "llm": self.settings.llm if self.survey_weights.llm > 0 else None,
            },
            "records": [r.to_dict() for r in responses],
        }

    def _offer_context(self, twin_id: str, segments: Sequence[str]) -> _OfferContext:
        """What every variant's response of a twin stands on: its purchase days, order value, activity, segments."""
        days = purchase_days(self._valid_events(twin_id))
        facts = self.profile(twin_id).facts()["purchases"]
        p_buy_again = None
        fit = self.lifetime_fit(twin_id) if days else None
        if fit is not None:
            f = behaviour_features(days, as_of=max(fit.observed_until, days[-1].day))
            assert f is not None
            p_buy_again = self.lifetime_model.forecast(fit, f, horizon_days=HORIZON_DAYS).p_buy_again
        orders = facts["orders"]
        values = {
            "country": next(iter(facts["countries"]), "unknown"),
            "currency": facts["currency"] or "unknown",
            "favourite_category": facts["favourite_categories"][0]["category"]
            if facts["favourite_categories"]
            else "none",
            "churn_risk": churn_level(1 - p_buy_again) if p_buy_again is not None else "unknown",
            "orders": "0" if orders == 0 else "1" if orders == 1 else "2-4" if orders < 5 else "5+",
        }
        return _OfferContext(
            days, facts["average_order_value"], p_buy_again, {s: values[s] for s in segments}
        )

    def _offer_response(
        self, twin_id: str, campaign: Campaign, variant: Variant, model: ChoiceModel, context: _OfferContext
    ) -> strategy.TwinResponse:
        fit = offer_fit(
            variant, context.days, average_order=context.average_order, p_buy_again=context.p_buy_again
        )
        behaviour = offer_prior(fit, campaign.channel_of(variant))
        qid, text = campaign.question(variant)
        question = Question(qid, text, RESPONSES)
        choice = model.choose(twin_id, question)
        # Where the panel answered this question before, the choice model's parts (own, similar, panel, llm)
        # share the weight with the behaviour part. Where nobody did, its panel part is uniform and would only
        # blur the behaviour part: the LLM's part, if any, keeps its configured weight beside it.
        weighted: list[tuple[float, Part]] = []
        if model.matrix.find_key(question) is not None:
            weighted = [((1 - OFFER_BEHAVIOUR_WEIGHT) * p.weight, p) for p in choice.parts]
        else:
            weighted = [(model.weights.llm, p) for p in choice.parts if p.name == "llm"]
        parts = [(1.0 - sum(w for w, _ in weighted), behaviour)] + [(w, p.distribution) for w, p in weighted]
        dist = offer_pool(parts)
        texts = {d.day.isoformat(): ", ".join(d.products[:4]) for d in context.days}
        by_event = {e: day for day, d in zip(texts, context.days, strict=True) for e in d.event_ids}
        evidence = [
            {"event_id": e, "text": f"{by_event[e]}: {texts[by_event[e]]}", "score": 1.0} for e in fit.matched
        ] + [c.to_dict() for c in choice.citations]
        shown = [
            {
                "name": "behaviour",
                "weight": round(parts[0][0], 4),
                "detail": fit.basis,
                "distribution": {k: round(v, 4) for k, v in behaviour.items()},
            }
        ]
        shown += [{**p.to_dict(), "weight": round(w, 4)} for w, p in weighted]
        return strategy.TwinResponse(
            twin_id,
            variant.key,
            dist,
            strategy.p_response(dist, campaign.responding),
            offer_reason(dist, fit),
            evidence,
            shown,
            context.segments,
        )

    # --- asking --------------------------------------------------------------------------------------

    @cached_property
    def retrieval_policy(self) -> RetrievalPolicy:
        s = self.settings
        return RetrievalPolicy(
            w_dense=s.weight_dense,
            w_lexical=s.weight_lexical,
            w_recency=s.weight_recency,
            w_importance=s.weight_importance,
            half_life_days=s.recency_half_life_days,
            candidates=s.retrieval_candidates,
            k=s.top_k,
            min_relevance=s.min_relevance,
            min_lexical_share=s.min_lexical_share,
        )

    @cached_property
    def _lexical_indexes(self) -> LexicalIndexCache:
        return LexicalIndexCache()

    def retrieve(self, twin_id: str, question: str) -> list[ScoredMemory]:
        """The twin's evidence for a question, best first, each with the components of its score.

        Dense candidates come from the store, lexical ones from a BM25 index of the twin's events, kept per
        twin and rebuilt when its events change. ``memory.score`` stays the cosine similarity.
        """
        version = self.registry.events_version(twin_id)
        if version is None:
            raise TwinNotFound(twin_id)
        invalid = set(self.registry.memory_statuses(twin_id))
        # The registry's count is written after every store write (ingest, forget), so it moves whenever the
        # twin's events do, in this process or another worker's, without asking the store; a twin erased and
        # ingested again has another creation time.
        index = self._lexical_indexes.get(
            twin_id,
            version=(*version, len(invalid)),
            load=lambda: [e for e in self.store.events(twin_id) if e.event_id not in invalid],
        )

        def search(k: int) -> list[Memory]:
            # Superseded and forgotten memories are not evidence; ask for enough to make up for them.
            found = self.store.search(twin_id, question, k=k + len(invalid))
            return [m for m in found if m.event.event_id not in invalid][:k]

        return self.retrieval_policy.retrieve(question, search=search, index=index)

    def ask(
        self, twin_id: str, question: str, *, conversation: Sequence[Message] = (), use: Use = LOCAL_RESEARCH
    ) -> Answer:
        """The twin's answer to one question, grounded in its own history, or an honest abstention."""
        answer: Answer | None = None
        for part in self.ask_stream(twin_id, question, conversation=conversation, use=use):
            if isinstance(part, Answer):
                answer = part
        assert answer is not None
        return answer

    def ask_stream(
        self,
        twin_id: str,
        question: str,
        *,
        conversation: Sequence[Message] = (),
        query: str | None = None,
        use: Use = LOCAL_RESEARCH,
        action: str = "ask",
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the finished Answer with its citations.

        ``query`` is what evidence is retrieved for, when it should differ from the question (a follow-up);
        ``action`` is how the use is named in the audit.
        """
        if not question.strip():
            raise ValueError("question: must not be empty")
        self.authorize(twin_id, use, action)
        memories = [s.memory for s in self.retrieve(twin_id, query or question)]
        summary = self.profile(twin_id).summary
        prompt = self.prompter.build(twin_id, question, memories, conversation=conversation, summary=summary)
        if not prompt.evidence:
            # No evidence, no generation: a small model asked anyway would invent an answer.
            text = self.prompter.abstain_text
            self._audit(use, action, twin_id, [], abstained=True)
            yield text
            yield Answer(twin_id, text, [], abstained=True, model=self.settings.llm)
            return
        pieces: list[str] = []
        for piece in self.chat_model.stream(
            prompt.messages, max_tokens=self.settings.max_answer_tokens, temperature=self.settings.temperature
        ):
            pieces.append(piece)
            yield piece
        text, citations = self.prompter.citations("".join(pieces).strip(), prompt.evidence)
        self._audit(use, action, twin_id, [c.event_id for c in citations], abstained=False)
        yield Answer(
            twin_id,
            text or self.prompter.abstain_text,
            citations,
            abstained=False,
            model=self.chat_model.name,
        )


@dataclass(frozen=True)
class _OfferContext:
    days: list[PurchaseDay]
    average_order: float | None
    p_buy_again: float | None
    segments: dict[str, str]


def _profile_from(document: dict[str, Any] | None) -> Profile | None:
    try:
        return None if document is None else Profile.from_dict(document)
    except ProfileVersionError:
        return None  # written by another profile version: rebuilt from the events


def _progress(
    items: Iterable[T], *, enabled: bool, total: int | None, label: str, unit: str = "row"
) -> Iterable[T]:
    if not enabled:
        return items
    from tqdm import tqdm

    # tqdm writes to stderr and disables itself when that is not a terminal (disable=None).
    desc = label if label in ("survey", "simulate") else f"ingest {label}"
    return tqdm(items, total=total, desc=desc, unit=unit, disable=None, leave=False)
