"""Which of a twin's memories become evidence for a question, and in what order.

Every event of a history is a memory with four scores in [0, 1], combined linearly (the policy's weights):

    score = w_dense·dense + w_lexical·lexical + w_recency·recency + w_importance·importance

- dense: cosine similarity of the question's and the event's embeddings (below 0 counts as 0);
- lexical: Okapi BM25 over the twin's own events, so an exact product code, invoice number or rare word that
  an embedding blurs still finds its event;
- recency: exponential decay with the event's age, measured from the twin's newest event;
- importance: how much an event says about the customer, from its source and kind (or its own value).

Relevance is a gate, not just a weight: only an event related to the question (cosine >= min_relevance, or
containing most of the question's words) is evidence at all. Recency and importance reorder relevant evidence;
they never turn an unrelated event into evidence, so a twin with nothing relevant still abstains.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from twinchat.domain.events import Event
from twinchat.domain.models import Memory

# --- importance ----------------------------------------------------------------------------------------

# Base importance by source. What a customer says about the business, in their own words, is what a twin most
# needs to voice; a correction says an earlier record is wrong, so it must outweigh what it corrects.
SOURCE_IMPORTANCE: dict[str, float] = {
    "correction": 1.0,  # overrides earlier records
    "support": 0.7,  # problems and requests, stated by the customer
    "review": 0.7,  # opinions, stated by the customer
    "survey": 0.7,  # answers to questions asked on purpose
    "crm": 0.55,  # an agent's note: about the customer, at second hand
    "purchase": 0.4,  # behaviour: most of a history, each one routine
    "social": 0.3,  # public posts: often about anything but the business
    "web": 0.2,  # page views: intent at best
}
DEFAULT_IMPORTANCE = 0.4  # a source of the user's own counts as a routine event until it says otherwise

# Added to the source's importance when a word of the event's kind starts with the stem (the largest applies).
# Cancellations, complaints and money back are turning points of a relationship: they predict what a customer
# does next, and they are what the customer would bring up first.
KIND_BOOST: dict[str, float] = {
    "cancel": 0.3,
    "complain": 0.3,
    "refund": 0.3,
    "chargeback": 0.3,
    "dispute": 0.3,
    "churn": 0.3,
    "return": 0.2,
}


def importance(event: Event) -> float:
    """How much an event says about its customer, in [0, 1].

    An explicit numeric ``importance`` attribute wins (clamped to [0, 1]); otherwise SOURCE_IMPORTANCE for the
    event's source (DEFAULT_IMPORTANCE for others) plus the KIND_BOOST of its kind.

    >>> importance(Event("c1", "Cancelled order 581", "e1", source="purchase", kind="cancellation"))
    0.7
    """
    explicit = _number(event.attributes.get("importance"))
    if explicit is not None:
        return _clamp(explicit)
    base = SOURCE_IMPORTANCE.get(event.source.lower(), DEFAULT_IMPORTANCE)
    words = _WORD.findall((event.kind or "").lower())
    boost = max((b for stem, b in KIND_BOOST.items() for w in words if w.startswith(stem)), default=0.0)
    return round(_clamp(base + boost), 6)


# --- recency -------------------------------------------------------------------------------------------


def recency(timestamp: datetime | None, newest: datetime | None, *, half_life_days: float) -> float:
    """0.5 ** (age / half-life), the age counted in days back from the twin's newest event; 0 when undated.

    Measured from the twin's newest event, not from now: a twin speaks as of the last thing it knows,
    histories from 2011 would otherwise all score 0, and an answer must not change from one day to the next.
    Exponential, because a half-life means the same thing for every history (linear decay needs a horizon,
    makes everything beyond it 0, and depends on how long the history is), and because after a few half-lives
    old events are all about equally old, so relevance and importance decide among them (a hyperbolic
    1 / (1 + age / half-life) keeps ranking ten-year-old events by age). Park et al.'s 0.995 ** hours (a
    half-life under six days) suits agents living through simulated days, not multi-year customer
    histories: everything older than a month would score 0. An undated event gets no recency: it may be old.

    >>> from datetime import timedelta
    >>> newest = datetime(2011, 12, 9, tzinfo=UTC)
    >>> recency(newest - timedelta(days=365), newest, half_life_days=365)
    0.5
    """
    if timestamp is None or newest is None:
        return 0.0
    age_days = max((_aware(newest) - _aware(timestamp)).total_seconds() / 86_400, 0.0)
    return 0.5 ** (age_days / half_life_days)


# --- lexical matching ----------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits, any script
# Function words and the scaffolding of questions; content words, numbers and codes are kept.
STOP_WORDS = frozenset(
    """a about after all also am an and any are as at be been before but by can could d did do does doing for
    from had has have having he her him his how i if in into is it its just ll m me my no nor not of on or our
    ours over please re s she so some t tell than that the their them then there these they this those to too
    up us ve was we were what when where which who whom why will with would you your yours ever""".split()
)


def tokenize(text: str) -> list[str]:
    """Lowercase letters-and-digits words without stop words, plurals folded (Harman's S-stemmer).

    >>> tokenize("Did you buy the cake stands, order 85123A?")
    ['buy', 'cake', 'stand', 'order', '85123a']
    """
    return [_singular(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def _singular(word: str) -> str:
    # Harman (1991): plurals only, so that "stands" finds "stand"; codes and short words stay as they are.
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class LexicalMatch:
    """How one event matches a question's words.

    bm25: the Okapi BM25 score. lexical: BM25 scaled to [0, 1] (see LexicalIndex.match). share: the
    idf-weighted share of the question's words the event contains, which decides lexical relevance.
    """

    event: Event
    bm25: float
    lexical: float
    share: float


class LexicalIndex:
    """Okapi BM25 over one twin's events (Robertson & Zaragoza 2009; k1 = 1.2, b = 0.75).

        bm25(event) = sum over the question's distinct words t of
                      idf(t) · tf·(k1 + 1) / (tf + k1·(1 − b + b·len / mean len))
        idf(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))

    with tf the count of t in the event, N the twin's number of events and n(t) how many contain t. This idf
    (Lucene's) stays positive for a word most events contain, and gives a word no event contains the largest
    weight, so a question about things the history never mentions matches it only weakly.

    >>> events = [Event("c1", "Bought a red teapot", "e1"), Event("c1", "Bought blue mugs", "e2")]
    >>> index = LexicalIndex(events)
    >>> [m.event.event_id for m in index.match("Which teapot?").values()]
    ['e1']
    """

    def __init__(self, events: Sequence[Event], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.events = list(events)
        self.k1 = k1
        self.b = b
        self.newest = max((_aware(e.timestamp) for e in self.events if e.timestamp), default=None)
        self._lengths: list[int] = []
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for position, event in enumerate(self.events):
            counts = Counter(tokenize(event.text))
            self._lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self._postings[term].append((position, tf))
        self._mean_length = (sum(self._lengths) / len(self._lengths) if self._lengths else 0.0) or 1.0

    @property
    def size(self) -> int:
        return len(self.events)

    def idf(self, term: str) -> float:
        n = len(self._postings.get(term, ()))
        return math.log(1.0 + (self.size - n + 0.5) / (n + 0.5))

    def match(self, query: str, *, floor: float = 0.5) -> dict[str, LexicalMatch]:
        """Every event sharing a word with the query, by event id.

        lexical = bm25 / max(best bm25 among the twin's events, floor · ideal), at most 1, where ideal is the
        BM25 of an average-length event containing each question word once (the sum of their idf). The best
        match scores 1 when it covers a fair part of the question; a question matched only by a word every
        event shares, or only by one word out of many, gives every event a small lexical score.
        """
        terms = list(dict.fromkeys(tokenize(query)))
        if not terms or not self.events:
            return {}
        idf = {t: self.idf(t) for t in terms}
        ideal = sum(idf.values())
        scores: dict[int, float] = defaultdict(float)
        found: dict[int, float] = defaultdict(float)
        for term in terms:
            for position, tf in self._postings.get(term, ()):
                length = self._lengths[position] / self._mean_length
                saturation = tf + self.k1 * (1 - self.b + self.b * length)
                scores[position] += idf[term] * tf * (self.k1 + 1) / saturation
                found[position] += idf[term]
        if not scores:
            return {}
        scale = max(max(scores.values()), floor * ideal)
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return {
            self.events[p].event_id: LexicalMatch(self.events[p], s, min(s / scale, 1.0), found[p] / ideal)
            for p, s in ranked
        }


class LexicalIndexCache:
    """Each twin's LexicalIndex, rebuilt when the twin's version changes, for at most max_twins twins.

    The version is what the caller knows changes with the indexed events, whichever process changed them: the
    number of events stored and of memories invalidated (events are only ever added; an invalidated one is
    never valid again).
    """

    def __init__(self, *, max_twins: int = 256) -> None:
        self.max_twins = max_twins
        self._indexes: OrderedDict[str, tuple[Hashable, LexicalIndex]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, twin_id: str, *, version: Hashable, load: Callable[[], Sequence[Event]]) -> LexicalIndex:
        with self._lock:
            cached = self._indexes.get(twin_id)
            if cached is not None and cached[0] == version:
                self._indexes.move_to_end(twin_id)
                return cached[1]
        index = LexicalIndex(load())  # outside the lock: other twins need not wait for this one
        with self._lock:
            self._indexes[twin_id] = (version, index)
            self._indexes.move_to_end(twin_id)
            while len(self._indexes) > self.max_twins:
                self._indexes.popitem(last=False)
        return index

    def drop(self, twin_id: str) -> None:
        with self._lock:
            self._indexes.pop(twin_id, None)


# --- the policy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoredMemory:
    """A memory chosen as evidence, with its score and every component of it, so an answer can show why.

    ``memory.score`` stays the cosine similarity of question and event (0 where the caller gave none);
    ``dense`` is that cosine as used in the score (below 0 counts as 0).
    """

    memory: Memory
    score: float
    dense: float
    lexical: float
    recency: float
    importance: float
    lexical_share: float
    relevant_by: Literal["dense", "lexical", "both"]

    @property
    def event(self) -> Event:
        return self.memory.event

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event.event_id,
            "score": round(self.score, 4),
            "cosine": round(self.memory.score, 4),
            "dense": round(self.dense, 4),
            "lexical": round(self.lexical, 4),
            "recency": round(self.recency, 4),
            "importance": round(self.importance, 4),
            "lexical_share": round(self.lexical_share, 4),
            "relevant_by": self.relevant_by,
        }


@dataclass(frozen=True)
class RetrievalPolicy:
    """How a twin's memories are ranked as evidence. Defaults (TwinService reads all but lexical_floor from
    TWINCHAT_ settings, see config.py; k is TWINCHAT_TOP_K):

    w_dense: 0.5             weight of the cosine similarity: meaning, paraphrase
    w_lexical: 0.25          weight of BM25: exact words, codes, numbers the embedding blurs
    w_recency: 0.15          weight of recency: the newer of two equally relevant events first
    w_importance: 0.1        weight of importance: a complaint before a page view
    half_life_days: 365      age, back from the twin's newest event, at which recency is 0.5
    candidates: 30           dense candidates fetched from the store per question
    k: 6                     evidence returned at most, best first (the prompt's token budget may keep fewer)
    min_relevance: 0.25      cosine from which an event is relevant
    min_lexical_share: 0.5   share of the question's idf weight from which an event is relevant by its words
    lexical_floor: 0.5       BM25 is scaled by at least this share of the question's ideal BM25

    Relevance (w_dense + w_lexical = 0.75) outweighs recency and importance together (0.25); the defaults
    sum to 1, so a score is in [0, 1]. Other weights need not.

    >>> from datetime import timedelta
    >>> old = Event("c1", "Bought a teapot", "e1", datetime(2011, 1, 1, tzinfo=UTC))
    >>> new = Event("c1", "Bought a teapot", "e2", old.timestamp + timedelta(days=200))
    >>> [s.event.event_id for s in RetrievalPolicy().rank("teapot?", [Memory(old, 0.6), Memory(new, 0.6)])]
    ['e2', 'e1']
    """

    w_dense: float = 0.5
    w_lexical: float = 0.25
    w_recency: float = 0.15
    w_importance: float = 0.1
    half_life_days: float = 365.0
    candidates: int = 30
    k: int = 6
    min_relevance: float = 0.25
    min_lexical_share: float = 0.5
    lexical_floor: float = 0.5

    def __post_init__(self) -> None:
        for name in ("w_dense", "w_lexical", "w_recency", "w_importance"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: {getattr(self, name)} is negative; weights are 0 or more")
        if self.half_life_days <= 0:
            raise ValueError(f"half_life_days: {self.half_life_days}; expected a positive number of days")
        if self.candidates < 1 or self.k < 1:
            raise ValueError(f"candidates, k: {self.candidates}, {self.k}; expected at least 1")

    def rank(
        self,
        query: str,
        dense: Sequence[Memory],
        lexical: LexicalIndex | Sequence[Event] | None = None,
        *,
        newest: datetime | None = None,
    ) -> list[ScoredMemory]:
        """The k best relevant memories, best first.

        dense: candidates from the vector store, their score the cosine. lexical: the twin's events (or their
        index); an event they match that dense lacks is scored as cosine 0. newest: the recency reference,
        by default the newest event known here.
        """
        index = lexical if lexical is None or isinstance(lexical, LexicalIndex) else LexicalIndex(lexical)
        matches = index.match(query, floor=self.lexical_floor) if index is not None else {}
        cosines = {m.event.event_id: m.score for m in dense}
        pool = {m.event.event_id: m for m in dense}
        for event_id, found in matches.items():
            pool.setdefault(event_id, Memory(found.event, 0.0))
        stamps = [_aware(m.event.timestamp) for m in pool.values() if m.event.timestamp]
        newest = newest or max([*stamps, *([index.newest] if index and index.newest else [])], default=None)

        scored: list[ScoredMemory] = []
        for event_id, memory in pool.items():
            match = matches.get(event_id)
            by_dense = event_id in cosines and cosines[event_id] >= self.min_relevance
            by_words = match is not None and match.share >= self.min_lexical_share
            if not (by_dense or by_words):
                continue  # recency and importance never make an unrelated event evidence
            parts = {
                "dense": max(cosines.get(event_id, 0.0), 0.0),
                "lexical": match.lexical if match else 0.0,
                "recency": recency(memory.event.timestamp, newest, half_life_days=self.half_life_days),
                "importance": importance(memory.event),
            }
            scored.append(
                ScoredMemory(
                    memory,
                    self.combine(**parts),
                    lexical_share=match.share if match else 0.0,
                    relevant_by="both" if by_dense and by_words else "dense" if by_dense else "lexical",
                    **parts,
                )
            )
        scored.sort(key=lambda s: (-s.score, -s.memory.score, s.event.event_id))
        return scored[: self.k]

    def combine(self, *, dense: float, lexical: float, recency: float, importance: float) -> float:
        return (
            self.w_dense * dense
            + self.w_lexical * lexical
            + self.w_recency * recency
            + self.w_importance * importance
        )

    def retrieve(
        self, query: str, *, search: Callable[[int], Sequence[Memory]], index: LexicalIndex | None
    ) -> list[ScoredMemory]:
        """Fetch dense candidates with search(k), add the index's lexical matches, and rank them.

        An event that matches the question's words but is not among the dense candidates has no cosine yet,
        and a store only answers top-k searches: then the search is widened once to the whole history, so that
        every candidate is ranked on all four components (an exact code the embedding ranks 100th needs this).
        """
        dense = list(search(max(self.candidates, self.k)))
        if index is not None and index.size > len(dense):
            seen = {m.event.event_id for m in dense}
            matches = index.match(query, floor=self.lexical_floor)
            if any(m.lexical >= _WIDEN_FROM and i not in seen for i, m in matches.items()):
                dense = list(search(index.size))
        return self.rank(query, dense, index)


# A lexical match this weak (a word most events share) is not worth widening the dense search for.
_WIDEN_FROM = 0.1


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
