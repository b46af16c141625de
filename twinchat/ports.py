"""The small interfaces the domain needs. Adapters implement them; fakes in twinchat.testing do too.

Each port has one or few abstract methods; conveniences are built on them here, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

from twinchat.domain.behaviour import Features, Forecast, LifetimeFit
from twinchat.domain.control import AuditEntry, Consent, MemoryStatus
from twinchat.domain.events import Event
from twinchat.domain.keys import ApiKey
from twinchat.domain.models import Memory, Message, Twin
from twinchat.domain.sessions import Session, Turn
from twinchat.domain.survey import SurveyAnswer

T = TypeVar("T")


class Embedder(ABC):
    """Turns texts into vectors of a fixed dimension."""

    name: str = "embedder"

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed(self, text: str) -> list[float]:
        return self.embed_batch([text])[0]

    def start_batch(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        """Start encoding texts; the future holds their vectors. An encoder with workers of its own queues them
        behind the texts started before, so that its caller can prepare the next texts while these run and the
        workers never wait in between; this default encodes them now, on the caller's thread."""
        return settled(self.embed_batch, texts)


class ChatModel(ABC):
    """A chat LLM. Implement ``stream``; ``complete`` is derived from it."""

    name: str = "chat-model"

    @abstractmethod
    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]: ...

    def complete(self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens, temperature=temperature))

    def score_options(self, messages: Sequence[Message], options: Sequence[str]) -> dict[str, float] | None:
        """Mean log-likelihood per token of each option as the reply; None where the model cannot score."""
        return None


class LifetimeModel(ABC):
    """A customer-lifetime model: fitted on a panel's purchase histories, it forecasts one customer's."""

    name: str = "lifetime-model"

    @abstractmethod
    def fit(self, panel: Sequence[Features], *, panel_name: str | None = None) -> LifetimeFit: ...

    @abstractmethod
    def forecast(self, fit: LifetimeFit, customer: Features, *, horizon_days: int) -> Forecast: ...


class TokenCounter(ABC):
    @abstractmethod
    def count(self, text: str) -> int: ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """Cut text to at most max_tokens (by characters, refined until it fits)."""
        if self.count(text) <= max_tokens:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count(text[:mid] + "…") <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return text[:lo] + "…"


class MemoryStore(ABC):
    """Each twin's own vector collection of events."""

    @abstractmethod
    def add(self, twin_id: str, events: Sequence[Event]) -> None:
        """Store events; an id already present is left as it is."""

    def add_many(self, events_by_twin: dict[str, list[Event]]) -> None:
        for twin_id, events in events_by_twin.items():
            self.add(twin_id, events)

    def embed_ahead(self, texts: Sequence[str]) -> Future[None]:
        """Start encoding texts about to be added, so that the add finds their vectors ready (a store that keeps
        vectors of recent texts; others need do nothing); the future is done when they are. Safe to call from
        another thread than the add's."""
        return settled(lambda: None)

    def warm(self) -> None:
        """Load now what the first searches would otherwise wait for (a model, indexes); a store with nothing
        to load does nothing. Safe to call from another thread while the store serves."""
        return None

    @abstractmethod
    def stored_texts(self, twin_id: str, event_ids: Sequence[str]) -> dict[str, str]:
        """The text stored under each of these ids that exists in the twin's collection."""

    def stored_texts_many(self, event_ids_by_twin: dict[str, list[str]]) -> dict[str, dict[str, str]]:
        """:meth:`stored_texts` for several twins at once (a store may answer in fewer calls)."""
        return {t: self.stored_texts(t, ids) for t, ids in event_ids_by_twin.items()}

    @abstractmethod
    def search(self, twin_id: str, query: str, *, k: int) -> list[Memory]:
        """The k memories nearest the query, best first; only ever from this twin's collection."""

    @abstractmethod
    def events(self, twin_id: str) -> list[Event]: ...

    @abstractmethod
    def count(self, twin_id: str) -> int: ...

    def counts(self, twin_ids: Sequence[str]) -> dict[str, int]:
        """:meth:`count` for several twins at once (a store may answer in fewer calls)."""
        return {t: self.count(t) for t in twin_ids}

    @abstractmethod
    def delete_twin(self, twin_id: str) -> None: ...

    @abstractmethod
    def delete_events(self, twin_id: str, event_ids: Sequence[str]) -> None:
        """Remove these events of the twin (a memory the customer asked to forget)."""


class TwinRegistry(ABC):
    """Metadata about twins and panels (SQL by default)."""

    @abstractmethod
    def touch_twins(
        self, counts: dict[str, int], *, panel: str | None = None, synthetic: bool = False
    ) -> None:
        """Create twins not seen before (labelled ``synthetic`` if so), set their event counts, and put them
        in a panel if given. A twin's label is set when it is created and never changed afterwards."""

    @abstractmethod
    def get(self, twin_id: str) -> Twin | None: ...

    def get_many(self, twin_ids: Sequence[str]) -> dict[str, Twin | None]:
        """:meth:`get` for several twins at once (a registry may answer in fewer queries)."""
        return {t: self.get(t) for t in twin_ids}

    def events_version(self, twin_id: str) -> tuple[datetime, int] | None:
        """What changes whenever the twin's events do, in any process: when the twin was created (an erased twin
        that comes back is another) and its event count as last set. None for no such twin (a registry may
        answer more cheaply than :meth:`get`)."""
        twin = self.get(twin_id)
        return None if twin is None else (twin.created_at, twin.n_events)

    @abstractmethod
    def list_twins(self, *, panel: str | None = None) -> list[Twin]: ...

    @abstractmethod
    def panels(self) -> dict[str, int]: ...

    @abstractmethod
    def get_profile(self, twin_id: str) -> dict[str, Any] | None:
        """The twin's stored profile document (twinchat.domain.profile.Profile.to_dict), None when none is."""

    @abstractmethod
    def save_profile(self, twin_id: str, profile: dict[str, Any]) -> None:
        """Store the twin's profile document, replacing the previous one."""

    def get_profiles(self, twin_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored profile documents of these twins (those that have one); adapters may do it in one query."""
        found = {t: self.get_profile(t) for t in twin_ids}
        return {t: doc for t, doc in found.items() if doc is not None}

    def save_profiles(self, profiles: dict[str, dict[str, Any]]) -> None:
        """Store several profile documents; adapters may do it in one transaction."""
        for twin_id, profile in profiles.items():
            self.save_profile(twin_id, profile)

    @abstractmethod
    def set_panel(self, panel: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Add twins to a panel and take others out of it."""

    @abstractmethod
    def consents_of(self, twin_id: str) -> dict[str, Consent]: ...

    @abstractmethod
    def set_consents(self, consents: Sequence[Consent], *, only_if_absent: bool = False) -> None:
        """Record consent decisions; with only_if_absent, never change a decision already recorded."""

    @abstractmethod
    def record(self, entries: Sequence[AuditEntry]) -> None:
        """Append audit entries. The audit is append-only."""

    @abstractmethod
    def audit_entries(self, *, twin_id: str | None = None, limit: int | None = None) -> list[AuditEntry]: ...

    @abstractmethod
    def set_memory_status(self, statuses: Sequence[MemoryStatus]) -> None: ...

    @abstractmethod
    def memory_statuses(self, twin_id: str) -> dict[str, MemoryStatus]: ...

    @abstractmethod
    def delete_survey_answers(self, twin_id: str, event_ids: Sequence[str]) -> None: ...

    @abstractmethod
    def add_identifiers(
        self, identifiers: Mapping[str, Sequence[tuple[str, str]]], *, origin: str = ""
    ) -> None:
        """Record that these (kind, value) identifiers belong to these twins; an identifier keeps its first twin."""

    @abstractmethod
    def identifiers_of(self, twin_id: str) -> list[tuple[str, str]]:
        """The twin's identifiers as (kind, value), sorted."""

    @abstractmethod
    def twins_by_identifier(self, identifiers: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The twin of each of these identifiers that belongs to one."""

    @abstractmethod
    def erase_twin(self, twin_id: str, *, tombstone: str) -> None:
        """Delete every row about the twin; its audit rows keep only a tombstone, the action and the time."""

    @abstractmethod
    def sessions_of(self, twin_id: str) -> list[Session]: ...

    @abstractmethod
    def create_session(self, session: Session) -> None: ...

    @abstractmethod
    def get_session(self, session_id: str) -> Session | None: ...

    @abstractmethod
    def append_turns(self, session_id: str, turns: Sequence[Turn]) -> None:
        """Add turns after the session's last one."""

    @abstractmethod
    def add_survey_answers(self, answers: Sequence[SurveyAnswer]) -> None:
        """Record structured survey answers found in newly stored events (an event id once)."""

    @abstractmethod
    def survey_answers(
        self, *, twin_ids: Sequence[str] | None = None, valid_only: bool = False
    ) -> list[SurveyAnswer]:
        """Survey answers of these twins (all twins when None); valid_only leaves out invalidated ones."""


class KeyStore(ABC):
    """API keys, kept as digests (SQL by default, in the registry's database)."""

    @abstractmethod
    def add(self, key: ApiKey, digest: str) -> None: ...

    @abstractmethod
    def by_digest(self, digest: str) -> ApiKey | None: ...

    @abstractmethod
    def list_keys(self) -> list[ApiKey]: ...

    @abstractmethod
    def revoke(self, key_id: str, at: datetime) -> bool:
        """Revoke an active key; False when there is no such active key."""

    @abstractmethod
    def delete_for_twin(self, twin_id: str) -> int:
        """Remove the keys bound to a twin (its erasure); returns how many."""


def settled(function: Callable[..., T], *args: Any) -> Future[T]:
    """A future already done with ``function(*args)``: its result, or the exception it raised.

    >>> settled(len, "abc").result()
    3
    >>> settled(int, "x").exception()
    ValueError("invalid literal for int() with base 10: 'x'")
    """
    done: Future[T] = Future()
    try:
        done.set_result(function(*args))
    except Exception as exc:
        done.set_exception(exc)
    return done
