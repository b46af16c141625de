"""The services the CLI, the API and the UI share: ingest history, list twins, ask a twin.

A TwinService holds ports, never SDKs; ``TwinService.from_settings`` wires the configured backends, each
created on first use so that commands which do not need the LLM never load it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from twinchat.config import Settings
from twinchat.domain.events import Event, EventError
from twinchat.domain.models import Answer, Message, Twin
from twinchat.domain.persona import PersonaPrompter, sanitize
from twinchat.domain.profile import Profile, ProfileVersionError, summarize, summary_author
from twinchat.domain.profile import update as update_profile
from twinchat.domain.prompts import PromptTemplate, load_prompt
from twinchat.domain.readers import RawRecord, RowProblem, UnreadableInput, count_rows, read_records
from twinchat.domain.retrieval import LexicalIndexCache, RetrievalPolicy, ScoredMemory
from twinchat.domain.sessions import Session, Turn, new_session_id, now
from twinchat.domain.survey import (
    AnswerMatrix,
    ChoiceAnswer,
    ChoiceModel,
    Question,
    SurveyAnswer,
    Weights,
    survey_answer_of,
)
from twinchat.ports import ChatModel, Embedder, MemoryStore, TokenCounter, TwinRegistry


class SessionNotFound(LookupError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r}; start one with `twinchat chat TWIN_ID`")
        self.session_id = session_id


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
        store: MemoryStore,
        registry: TwinRegistry,
        counter: TokenCounter,
        chat_model: ChatModel | Callable[[], ChatModel],
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.counter = counter
        self._chat_model = chat_model

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder: Embedder | None = None) -> TwinService:
        from twinchat import factory

        embedder = embedder or factory.make_embedder(settings)
        return cls(
            settings,
            store=factory.make_store(settings, embedder),
            registry=factory.make_registry(settings),
            counter=factory.make_token_counter(),
            chat_model=lambda: factory.make_chat_model(settings),
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
    ) -> IngestReport:
        """Validate and store records in batches; every valid record is stored even when others are bad."""
        report = report or IngestReport()
        batch: list[tuple[RawRecord, Event]] = []
        for item in _progress(records, enabled=progress, total=total, label=label):
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
                self._store_batch(batch, panel, report)
                batch = []
        if batch:
            self._store_batch(batch, panel, report)
        return report

    def _store_batch(
        self, batch: list[tuple[RawRecord, Event]], panel: str | None, report: IngestReport
    ) -> None:
        by_twin: dict[str, list[tuple[RawRecord, Event]]] = {}
        for raw, event in batch:
            by_twin.setdefault(event.customer_id, []).append((raw, event))
        known = {t: self.registry.get(t) is not None for t in by_twin}
        fresh: dict[str, list[Event]] = {}
        for twin_id, items in by_twin.items():
            stored = self.store.stored_texts(twin_id, [e.event_id for _, e in items])
            for raw, event in items:
                previous = stored.get(event.event_id)
                if previous is None:
                    fresh.setdefault(twin_id, []).append(event)
                    stored[event.event_id] = event.text  # a repeat later in the same batch is a duplicate
                elif previous == event.text:
                    report.duplicates += 1
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
        # Structured answers first: idempotent by event id, so a run stopped between the two writes heals.
        self.registry.add_survey_answers(
            [a for events in fresh.values() for e in events if (a := survey_answer_of(e)) is not None]
        )
        self.store.add_many(fresh)
        report.stored += sum(len(events) for events in fresh.values())
        # Counts are read back from the store, so a run interrupted between the two writes heals on re-run.
        counts = {t: self.store.count(t) for t in by_twin}
        self.registry.touch_twins(counts, panel=panel)
        self._update_profiles(fresh, counts)
        report.twins_touched.update(by_twin)
        report.new_twins.update(t for t, was_known in known.items() if not was_known)

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
        """Fold just-stored events into each twin's profile: the cost follows the new events only."""
        stored = self.registry.get_profiles([t for t, events in fresh.items() if events])
        updated: dict[str, dict[str, Any]] = {}
        for twin_id, events in fresh.items():
            if not events:
                continue
            profile = _profile_from(stored.get(twin_id)) or Profile()
            if profile.n_events + len(events) == counts[twin_id]:
                profile = update_profile(profile, events)
            else:
                # The profile missed events (stored before profiles existed, under another profile version,
                # or by a run stopped before this write): rebuild it from the store, once.
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

    def chat_stream(self, session_id: str, message: str) -> Iterator[str | Answer]:
        """One turn of a conversation: streamed like ask_stream, remembered in the session afterwards."""
        session = self.session(session_id)
        asked = now()
        answer: Answer | None = None
        for part in self.ask_stream(
            session.twin_id,
            message,
            conversation=session.conversation(),
            query=session.retrieval_query(message),
        ):
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

    def chat(self, session_id: str, message: str) -> Answer:
        parts = list(self.chat_stream(session_id, message))
        answer = parts[-1]
        assert isinstance(answer, Answer)
        return answer

    # --- structured answers and surveys ---------------------------------------------------------------

    def choice_model(self, twin_ids: Sequence[str]) -> ChoiceModel:
        """The structured-answer model over the panels these twins belong to (every twin when in none)."""
        panels = {p for t in twin_ids for p in self.twin(t).panels}
        scope = sorted({t.twin_id for p in panels for t in self.registry.list_twins(panel=p)} | set(twin_ids))
        answers = self.registry.survey_answers(twin_ids=scope if panels else None)
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

    def choose(self, twin_id: str, question: Question, *, model: ChoiceModel | None = None) -> ChoiceAnswer:
        """A multiple-choice answer with its distribution, reason, evidence, and the weight of each part."""
        self.twin(twin_id)
        return (model or self.choice_model([twin_id])).choose(twin_id, question)

    def survey(
        self, questions: Sequence[Question], twin_ids: Sequence[str], *, progress: bool = False
    ) -> Iterator[dict[str, Any]]:
        """One record per twin and question: choices with distributions, free questions answered in words."""
        for t in twin_ids:
            self.twin(t)
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
            else:
                answer = self.ask(twin_id, question.text)
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
        twin and rebuilt when its event count changes. ``memory.score`` stays the cosine similarity.
        """
        self.twin(twin_id)
        index = self._lexical_indexes.get(
            twin_id, count=self.store.count(twin_id), load=lambda: self.store.events(twin_id)
        )
        return self.retrieval_policy.retrieve(
            question, search=lambda k: self.store.search(twin_id, question, k=k), index=index
        )

    def ask(self, twin_id: str, question: str, *, conversation: Sequence[Message] = ()) -> Answer:
        """The twin's answer to one question, grounded in its own history, or an honest abstention."""
        answer: Answer | None = None
        for part in self.ask_stream(twin_id, question, conversation=conversation):
            if isinstance(part, Answer):
                answer = part
        assert answer is not None
        return answer

    def ask_stream(
        self, twin_id: str, question: str, *, conversation: Sequence[Message] = (), query: str | None = None
    ) -> Iterator[str | Answer]:
        """Yield the answer's text as it is generated, then the finished Answer with its citations.

        ``query`` is what evidence is retrieved for, when it should differ from the question (a follow-up).
        """
        self.twin(twin_id)
        if not question.strip():
            raise ValueError("question: must not be empty")
        memories = [s.memory for s in self.retrieve(twin_id, query or question)]
        summary = self.profile(twin_id).summary
        prompt = self.prompter.build(twin_id, question, memories, conversation=conversation, summary=summary)
        if not prompt.evidence:
            # No evidence, no generation: a small model asked anyway would invent an answer.
            text = self.prompter.abstain_text
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
        yield Answer(
            twin_id,
            text or self.prompter.abstain_text,
            citations,
            abstained=False,
            model=self.chat_model.name,
        )


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
    desc = label if label == "survey" else f"ingest {label}"
    return tqdm(items, total=total, desc=desc, unit=unit, disable=None, leave=False)
