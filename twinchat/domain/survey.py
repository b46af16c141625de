"""Structured answers: a twin picks an option of a multiple-choice (or Likert) question with a distribution.

A 135M local model cannot do this alone, so the distribution pools evidence of several kinds, each shown with
its weight in the result:

- ``own``: the twin's own earlier answer to the same question (people repeat themselves, imperfectly);
- ``similar``: how twins that answered like this one on related questions answered this one: a tempered
  naive Bayes over the related questions most informative about this one (mutual information in the panel);
- ``panel``: the panel's answers to the question, smoothed: the honest fallback when the twin's own history
  says nothing;
- ``llm``: the LLM's likelihood of each option given the twin's evidence, where the model can score options.

Pooling is linear, over the parts available for this twin and question, with weights renormalised.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from twinchat.domain.models import Citation

# Event ids of customers' corrections (twinchat.domain.corrections.correction_id): an answer the customer gave
# about themself now is kept almost surely; the rest of the mass keeps the distribution proper.
CORRECTED = "corr_"
CORRECTED_CONSISTENCY = 0.95

_QA = re.compile(r"^\s*Q:\s*(?P<q>.+?)\s+A:\s*(?P<a>.+?)\s*$", re.DOTALL)


class QuestionError(ValueError):
    def __init__(self, index: int, field_name: str, reason: str) -> None:
        super().__init__(f"question {index}: {field_name}: {reason}")
        self.index, self.field, self.reason = index, field_name, reason


@dataclass(frozen=True)
class Question:
    """A survey question: options make it multiple choice (ordered options are a Likert scale)."""

    id: str
    text: str
    options: tuple[str, ...] = ()
    numeric: bool = False  # answered with a number: a distribution over the panel's values, and its mean

    @property
    def is_choice(self) -> bool:
        return bool(self.options)

    @property
    def is_structured(self) -> bool:
        return self.is_choice or self.numeric

    @classmethod
    def from_dict(cls, data: Any, *, index: int = 0) -> Question:
        if not isinstance(data, dict):
            raise QuestionError(
                index, "question", f"expected an object with id and text, got {type(data).__name__}"
            )
        qid, text, options, kind = data.get("id"), data.get("text"), data.get("options"), data.get("type")
        if not isinstance(qid, str | int) or isinstance(qid, bool) or not str(qid).strip():
            raise QuestionError(index, "id", "is required: a non-empty string")
        if not isinstance(text, str) or not text.strip():
            raise QuestionError(index, "text", "is required: the question's wording")
        if kind not in (None, "choice", "likert", "numeric", "free"):
            raise QuestionError(index, "type", f"{kind!r}: use choice, likert, numeric or free")
        if kind == "numeric":
            if options is not None:
                raise QuestionError(index, "options", "a numeric question has no options")
            return cls(str(qid), text.strip(), numeric=True)
        if options is None:
            if kind in ("choice", "likert"):
                raise QuestionError(index, "options", f"a {kind} question needs options")
            return cls(str(qid), text.strip())
        if not isinstance(options, list) or not all(isinstance(o, str) and o.strip() for o in options):
            raise QuestionError(
                index, "options", "must be a list of non-empty strings (or absent for a free answer)"
            )
        if len(options) < 2 or len({o.strip().lower() for o in options}) != len(options):
            raise QuestionError(index, "options", "needs at least two distinct options")
        return cls(str(qid), text.strip(), tuple(o.strip() for o in options))


def question_key(question_id: str | None, text: str | None) -> str:
    """How answers to the same question are recognised: its id if it has one, else its normalised wording."""
    if question_id:
        return str(question_id)
    return "text:" + " ".join(re.sub(r"[^a-z0-9 ]", " ", (text or "").lower()).split())


@dataclass(frozen=True)
class SurveyAnswer:
    """One answer a customer gave to a survey question, as stored at ingest."""

    twin_id: str
    key: str
    question: str
    answer: str
    event_id: str
    timestamp: datetime | None = None


def survey_answer_of(event: Any) -> SurveyAnswer | None:
    """The survey answer an event records (attributes question/answer, or text 'Q: ... A: ...'), if any."""
    if event.source not in ("survey", "correction"):
        return None
    attrs = event.attributes
    question, answer = attrs.get("question"), attrs.get("answer")
    if not (isinstance(question, str) and isinstance(answer, str | int | float)):
        match = _QA.match(event.text)
        if not match:
            return None
        question, answer = match["q"], match["a"]
    key = question_key(attrs.get("question_id"), question)
    return SurveyAnswer(
        event.customer_id, key, str(question), str(answer).strip(), event.event_id, event.timestamp
    )


class AnswerMatrix:
    """Each twin's latest answer to each question: the panel knowledge structured answers draw on."""

    def __init__(self, answers: Iterable[SurveyAnswer]) -> None:
        latest: dict[tuple[str, str], SurveyAnswer] = {}
        for a in answers:
            previous = latest.get((a.twin_id, a.key))
            if previous is None or _later(a, previous):
                latest[(a.twin_id, a.key)] = a
        self.by_twin: dict[str, dict[str, SurveyAnswer]] = defaultdict(dict)
        self.by_key: dict[str, dict[str, SurveyAnswer]] = defaultdict(dict)
        self.wording: dict[str, str] = {}
        for (twin_id, key), a in latest.items():
            self.by_twin[twin_id][key] = a
            self.by_key[key][twin_id] = a
            self.wording.setdefault(key, a.question)

    def find_key(self, question: Question) -> str | None:
        """The stored key of a question: by id, else by normalised wording."""
        for key in (question.id, question_key(None, question.text)):
            if key in self.by_key:
                return key
        return None


def _later(a: SurveyAnswer, b: SurveyAnswer) -> bool:
    if a.timestamp and b.timestamp:
        return a.timestamp > b.timestamp
    return a.timestamp is not None and b.timestamp is None


@dataclass(frozen=True)
class Weights:
    """Pooling weights and the similar-twins model's settings (calibrated: see evals/RESULTS.md)."""

    own: float = 0.5
    similar: float = 0.45
    panel: float = 0.05
    llm: float = 0.0
    own_consistency: float = 0.75  # P(same answer as last time), the order of GSS test-retest agreement
    features: int = 24  # related questions used by the similar-twins model
    temper: float = 0.25  # exponent on naive Bayes likelihoods: related questions are not independent
    min_overlap: int = 8  # twins answering both questions, for one to inform the other
    # features, temper: best mean accuracy over GSS dev splits (seeds 1-3) in evals/results/calibration.json

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Part:
    name: str
    weight: float
    distribution: dict[str, float]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": round(self.weight, 4),
            "distribution": {k: round(v, 4) for k, v in self.distribution.items()},
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ChoiceAnswer:
    """A twin's structured answer. Simulated, always; ``evidence`` says what it stood on."""

    twin_id: str
    question_id: str
    answer: str
    distribution: dict[str, float]
    reason: str
    citations: list[Citation]
    parts: list[Part]
    evidence: str  # "correction", "own_answer", "similar_twins" or "panel_only"
    simulated: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "twin_id": self.twin_id,
            "question_id": self.question_id,
            "answer": self.answer,
            "distribution": {k: round(v, 4) for k, v in self.distribution.items()},
            "reason": self.reason,
            "citations": [c.to_dict() for c in self.citations],
            "parts": [p.to_dict() for p in self.parts],
            "evidence": self.evidence,
            "simulated": self.simulated,
        }


@dataclass
class ChoiceModel:
    """Answers multiple-choice questions for the twins of one panel (see module docstring).

    >>> m = AnswerMatrix([SurveyAnswer("a", "q1", "Tea?", "Yes", "e1"), SurveyAnswer("b", "q1", "Tea?", "No", "e2")])
    >>> ChoiceModel(m).choose("c", Question("q1", "Tea?", ("Yes", "No"))).distribution
    {'Yes': 0.5, 'No': 0.5}
    """

    matrix: AnswerMatrix
    weights: Weights = field(default_factory=Weights)
    # Scores each option given the question and the twin's most relevant answers; None: no LLM part.
    scorer: Callable[[str, Question, list[SurveyAnswer]], Mapping[str, float] | None] | None = None
    _informative: dict[tuple[str, tuple[str, ...]], list[_Related]] = field(default_factory=dict)

    def estimate(self, twin_id: str, question: Question) -> ChoiceAnswer | None:
        """A numeric answer: a choice over the values the panel gave, answered with its expected value.

        None when nobody in the panel answered the question with numbers: there is nothing to ground it.
        """
        key = self.matrix.find_key(question)
        if key is None:
            return None
        values = sorted({v for a in self.matrix.by_key[key].values() if (v := _number(a.answer)) is not None})
        if len(values) < 2:
            return None
        by_option = {_format_number(v): v for v in values}
        answer = self.choose(twin_id, Question(question.id, question.text, tuple(by_option)))
        mean = sum(by_option[o] * p for o, p in answer.distribution.items())
        text = _format_number(round(mean, 2))
        return replace(
            answer, answer=text, reason=answer.reason.replace(f"I'd say {answer.answer}", f"I'd say {text}")
        )

    def choose(
        self, twin_id: str, question: Question, *, llm_scores: Mapping[str, float] | None = None
    ) -> ChoiceAnswer:
        if not question.is_choice:
            raise ValueError(f"question {question.id!r} has no options: ask it as a free question")
        options = question.options
        key = self.matrix.find_key(question)
        own_answers = self.matrix.by_twin.get(twin_id, {})
        panel = self._panel_prior(key, options, exclude=twin_id)
        parts = [Part("panel", self.weights.panel, panel, self._panel_detail(key, exclude=twin_id))]
        citations: list[Citation] = []

        own = own_answers.get(key) if key else None
        own_option = _match(own.answer, options) if own else None
        if own is not None and own_option is not None and own.event_id.startswith(CORRECTED):
            # The customer told us this answer themself, after the history: their word, not a guess to pool.
            dist = self._own(own_option, panel, consistency=CORRECTED_CONSISTENCY)
            part = Part("correction", 1.0, dist, f"corrected to {own.answer!r} by the customer")
            return ChoiceAnswer(
                twin_id,
                question.id,
                own_option,
                dist,
                f"I'd say {own_option}: I told you so myself when I corrected my record.",
                [Citation(own.event_id, f"Q: {own.question} A: {own.answer}", 1.0)],
                [part],
                "correction",
            )
        if own is not None and own_option is not None:
            dist = self._own(own_option, panel)
            parts.append(Part("own", self.weights.own, dist, f"answered {own.answer!r} before"))
            citations.append(Citation(own.event_id, f"Q: {own.question} A: {own.answer}", 1.0))

        similar, used = self._similar(twin_id, key, options, panel)
        if used:
            detail = f"{len(used)} related answers of mine, weighed by how twins who gave them answered this"
            parts.append(Part("similar", self.weights.similar, similar, detail))
            citations.extend(
                Citation(a.event_id, f"Q: {a.question} A: {a.answer}", round(score, 4))
                for a, score in used[:5]
            )

        if llm_scores is None and self.scorer is not None and self.weights.llm > 0:
            llm_scores = self.scorer(twin_id, question, [a for a, _ in used[:8]])
        if llm_scores:
            parts.append(
                Part("llm", self.weights.llm, _softmax(llm_scores, options), "option log-likelihoods")
            )

        distribution = _pool(parts, options)
        answer = max(options, key=lambda o: (distribution[o], -options.index(o)))
        evidence = "own_answer" if own_option else "similar_twins" if used else "panel_only"
        total = sum(p.weight for p in parts) or 1.0
        parts = [Part(p.name, p.weight / total, p.distribution, p.detail) for p in parts]
        return ChoiceAnswer(
            twin_id,
            question.id,
            answer,
            distribution,
            _reason(answer, evidence, own, used),
            citations,
            parts,
            evidence,
        )

    # --- parts ---------------------------------------------------------------------------------------

    def _panel_prior(self, key: str | None, options: Sequence[str], *, exclude: str) -> dict[str, float]:
        counts: Counter[str] = Counter()
        for twin_id, a in (self.matrix.by_key.get(key, {}) if key else {}).items():
            option = _match(a.answer, options)
            if option is not None and twin_id != exclude:
                counts[option] += 1
        n = sum(counts.values())
        return {o: (counts[o] + 1.0) / (n + len(options)) for o in options}

    def _panel_detail(self, key: str | None, *, exclude: str) -> str:
        n = len([t for t in self.matrix.by_key.get(key, {}) if t != exclude]) if key else 0
        return (
            f"answers of {n} other twins in the panel" if n else "no twin in the panel answered this: uniform"
        )

    def _own(
        self, option: str, panel: Mapping[str, float], *, consistency: float | None = None
    ) -> dict[str, float]:
        same = self.weights.own_consistency if consistency is None else consistency
        others = sum(v for o, v in panel.items() if o != option) or 1.0
        return {o: same if o == option else (1.0 - same) * panel[o] / others for o in panel}

    def _similar(
        self, twin_id: str, key: str | None, options: tuple[str, ...], prior: Mapping[str, float]
    ) -> tuple[dict[str, float], list[tuple[SurveyAnswer, float]]]:
        """Tempered naive Bayes over this twin's answers to the questions most informative about this one."""
        mine = self.matrix.by_twin.get(twin_id, {})
        if not key or not mine:
            return dict(prior), []
        own = self.matrix.by_key[key].get(twin_id)
        own_option = _match(own.answer, options) if own else None
        log_p = {o: math.log(prior[o]) for o in options}
        used: list[tuple[SurveyAnswer, float]] = []
        for related in self._informative_for(key, options):
            a = mine.get(related.key)
            if a is None:
                continue
            for o in options:
                same = related.joint[(a.answer, o)]
                total = related.totals[o]
                if own_option is not None:  # the twin's own answers are not evidence about twins like it
                    same -= own_option == o
                    total -= own_option == o
                log_p[o] += self.weights.temper * math.log((same + 0.5) / (total + 0.5 * len(related.values)))
            used.append((a, related.information))
            if len(used) >= self.weights.features:
                break
        return _softmax(log_p, options), used

    def _informative_for(self, key: str, options: tuple[str, ...]) -> list[_Related]:
        """Related questions ranked by mutual information with this one among the twins answering both."""
        cache_key = (key, options)
        if cache_key not in self._informative:
            targets = {t: o for t, a in self.matrix.by_key[key].items() if (o := _match(a.answer, options))}
            scored = []
            for feature, answers in self.matrix.by_key.items():
                if feature == key:
                    continue
                pairs = [(answers[t].answer, o) for t, o in targets.items() if t in answers]
                if len(pairs) >= self.weights.min_overlap:
                    scored.append(
                        _Related(
                            feature,
                            _mutual_information(pairs),
                            Counter(pairs),
                            Counter(o for _, o in pairs),
                            {v for v, _ in pairs},
                        )
                    )
            scored.sort(key=lambda r: r.information, reverse=True)
            # Keep more than `features`: a twin may not have answered the very top ones.
            self._informative[cache_key] = [
                r for r in scored[: self.weights.features * 8] if r.information > 0
            ]
        return self._informative[cache_key]


@dataclass(frozen=True)
class _Related:
    """A question related to the one asked: how its answers co-occur with the asked one's options."""

    key: str
    information: float
    joint: Counter[tuple[str, str]]
    totals: Counter[str]
    values: set[str]


def _mutual_information(pairs: Sequence[tuple[str, str]]) -> float:
    """MI (nats) of two answers over twins, minus its small-sample bias (Miller-Madow), so sparse items lose."""
    n = len(pairs)
    joint = Counter(pairs)
    left = Counter(a for a, _ in pairs)
    right = Counter(b for _, b in pairs)
    mi = sum(c / n * math.log(c * n / (left[a] * right[b])) for (a, b), c in joint.items())
    return mi - (len(left) - 1) * (len(right) - 1) / (2 * n)


def _number(text: str) -> float | None:
    try:
        value = float(text.replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _match(answer: str, options: Sequence[str]) -> str | None:
    folded = answer.strip().lower()
    for option in options:
        if option.lower() == folded:
            return option
    return None


def _softmax(scores: Mapping[str, float], options: Sequence[str]) -> dict[str, float]:
    top = max(scores[o] for o in options)
    exp = {o: math.exp(scores[o] - top) for o in options}
    total = sum(exp.values())
    return {o: exp[o] / total for o in options}


def _pool(parts: Sequence[Part], options: Sequence[str]) -> dict[str, float]:
    total = sum(p.weight for p in parts)
    if total <= 0:
        return {o: 1.0 / len(options) for o in options}
    pooled = {o: sum(p.weight * p.distribution[o] for p in parts) / total for o in options}
    norm = sum(pooled.values())
    return {o: v / norm for o, v in pooled.items()}


def _reason(
    answer: str, evidence: str, own: SurveyAnswer | None, used: list[tuple[SurveyAnswer, float]]
) -> str:
    if evidence == "own_answer" and own is not None:
        return f"I'd say {answer}: when I was asked this before, I answered {own.answer}."
    if evidence == "similar_twins":
        a = used[0][0]
        return (
            f"I'd say {answer}. My history doesn't answer this directly, but people who answered like me on "
            f"related questions (I said {a.answer!r} to '{_clip(a.question, 80)}') mostly chose it."
        )
    return f"My history says nothing about this, so {answer} is only what most people in my panel said."


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
