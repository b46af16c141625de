"""Corrections: a customer's statement becomes an authoritative memory that supersedes what it contradicts.

Deciding what a statement contradicts must work with a 135M model that cannot produce reliable JSON, so the
decision is made here, from retrieval: a memory is superseded when it is about the same subject (it shares a
content word with the statement) and close in meaning (cosine at least ``min_similarity``). A capable model can
add a judge that must also agree (a yes/no question, no JSON), which removes near misses: a statement about the
red teapot then leaves the blue teapot alone. Unrelated memories are never candidates.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from twinchat.domain.retrieval import ScoredMemory, tokenize
from twinchat.domain.survey import CORRECTED

# Phrases by which a customer, chatting with their own twin, corrects it rather than asks it something.
_CORRECTION = re.compile(
    r"^\s*(correction\s*:|actually\b|that'?s (not|wrong)|that is (not|wrong)|not true\b|no,\s*i\b|wrong\b|"
    r"i (no longer|don'?t|do not|never|have never|am not|'m not)\b|please (note|remember) that\b|for the record\b)",
    re.IGNORECASE,
)

Judge = Callable[[str, str], bool | None]  # (old memory, new statement) -> contradicts? None: cannot tell


@dataclass(frozen=True)
class CorrectionPolicy:
    min_similarity: float = 0.45  # cosine between statement and memory
    max_superseded: int = 5  # a statement is about one fact, not a history


@dataclass(frozen=True)
class SurveyFix:
    """A correction that answers a known survey question: it becomes the twin's latest answer."""

    key: str
    question: str
    answer: str
    replaces: list[str] = field(default_factory=list)  # the twin's earlier answer events


@dataclass(frozen=True)
class CorrectionResult:
    twin_id: str
    event_id: str
    statement: str
    superseded: list[str]
    survey: SurveyFix | None
    simulated: bool = False  # a correction is the customer's own word, not a simulation

    def to_dict(self) -> dict[str, Any]:
        return {
            "twin_id": self.twin_id,
            "event_id": self.event_id,
            "statement": self.statement,
            "superseded": self.superseded,
            "survey_answer": None
            if self.survey is None
            else {"question_id": self.survey.key, "answer": self.survey.answer},
        }


def looks_like_correction(message: str) -> bool:
    """Whether a customer's chat message corrects their twin ("Actually, I ...", "I no longer ...")."""
    return bool(_CORRECTION.search(message))


def correction_id(twin_id: str, statement: str, at: datetime) -> str:
    digest = hashlib.sha256(f"{twin_id}\n{statement}\n{at.isoformat()}".encode()).hexdigest()[:20]
    return f"{CORRECTED}{digest}"


def superseded_by(
    statement: str,
    candidates: Sequence[ScoredMemory],
    *,
    policy: CorrectionPolicy = CorrectionPolicy(),
    judge: Judge | None = None,
) -> list[ScoredMemory]:
    """The memories a statement contradicts or replaces, most similar first.

    A reference number (4 or more digits: an order, an invoice, a ticket) the statement shares with a memory is
    as good as closeness in meaning: "order 565995 was not mine" is about that order, however long its text.
    """
    words = set(tokenize(statement))
    references = {w for w in words if w.isdigit() and len(w) >= 4}
    chosen = []
    for candidate in sorted(candidates, key=lambda c: c.dense, reverse=True):
        shared = words & set(tokenize(candidate.event.text))
        if not shared or (candidate.dense < policy.min_similarity and not references & shared):
            continue
        if judge is not None and judge(candidate.event.text, statement) is False:
            continue
        chosen.append(candidate)
        if len(chosen) >= policy.max_superseded:
            break
    return chosen


def survey_fix(
    statement: str,
    questions: Mapping[str, tuple[str, set[str]]],
    own_answers: Mapping[str, Iterable[str]],
    similarity: Callable[[str, Sequence[str]], list[float]],
    *,
    min_similarity: float = 0.45,
    min_similarity_unique: float = 0.3,
) -> SurveyFix | None:
    """The survey question a statement answers, with the answer label it names, if any.

    ``questions`` maps a question key to its wording and the answer labels known for it; ``own_answers`` the
    twin's earlier answer events per key. The label must appear in the statement as words, and not as the value
    being replaced ("Catholic now, *not Protestant*", "I *used to be* Protestant"); the longest such label wins,
    so "not legal" is Not Legal, not Legal. The question must be the nearest in meaning, and close enough:
    ``min_similarity``, or ``min_similarity_unique`` when no other question has a label named in the statement.

    >>> questions = {"relig": ("What is your religious preference?", {"Protestant", "Catholic", "None"})}
    >>> fix = survey_fix("My religion is Catholic now, not Protestant", questions, {}, lambda s, qs: [0.6])
    >>> fix.answer
    'Catholic'
    """
    words = _words(statement)
    named = {}
    for key, (_, labels) in questions.items():
        spans = {label: _spans(_words(label), words) for label in labels}
        # A label inside a longer one's occurrence is not named: "never married" does not name Married.
        longer = [span for found in spans.values() for span in found]
        hits = [
            label
            for label, found in spans.items()
            if any(
                _asserted(span, words)
                and not any(o != span and o[0] <= span[0] and span[1] <= o[1] for o in longer)
                for span in found
            )
        ]
        if hits:
            named[key] = max(hits, key=len)
    if not named:
        return None
    keys = list(named)
    scores = similarity(statement, [questions[k][0] for k in keys])
    best = max(range(len(keys)), key=lambda i: scores[i])
    if scores[best] < (min_similarity if len(keys) > 1 else min_similarity_unique):
        return None
    key = keys[best]
    return SurveyFix(key, questions[key][0], named[key], list(own_answers.get(key, [])))


# Words that, just before a label, make it the value being replaced rather than the new one.
_REPLACED = {"not", "no", "longer", "nor", "instead", "than", "formerly", "previously", "used"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _spans(label: list[str], words: list[str]) -> list[tuple[int, int]]:
    n = len(label)
    return [(i, i + n) for i in range(len(words) - n + 1) if n and words[i : i + n] == label]


def _asserted(span: tuple[int, int], words: list[str]) -> bool:
    """Whether the words at this span are stated, not the value replaced: no cue in the 3 words before."""
    return not _REPLACED & set(words[max(0, span[0] - 3) : span[0]])
