"""Twin fidelity on Twin-2K-500: ../shared/BENCHMARKS.md section 2.

Each sampled person's twin is built from that person's profile alone (demographics and wave 1-3 scores,
imported with the shipped ``twin2k_profile`` mapping, as ``twinchat import twin2k_profile`` does) and asked
the Twin-2K-500 study measures that are one question on a scale, as a multiple choice through
``TwinService.choose``. Its answers are scored against the person's real answers
(``combined_dv_human.csv``) beside the published LLM twins of the same persons (``combined_dv_llm.csv``):
accuracy 1 - |a - b| / (DV_max - DV_min) and the correlation across persons, as the dataset's
``compute_vector_metrics`` computes them.

The sampled persons' study answers are never ingested. The structured-answer model answers a question from
how other customers of the panel answered it; so that it has something to stand on, a disjoint ``population``
of other persons joins the panel with their profiles and their answers to the asked measures, as a company's
earlier respondents would (BENCHMARKS.md section 1's train persons). ``--population 0`` asks with nothing
but the profiles.

The measure catalogue is read from each study's ``survey.qsf`` at run time: the question with the measure's
export tag (or matrix row ``<tag>_<row>``), the text shown before it in its block, and its options with
their numeric codes, checked against every person's coded answer in ``response.csv`` and the values in the
human file. Derived measures (means, shares, differences, allocations) are listed with the reason they are
not asked; ``ALIASES``, ``RECODED`` and ``REASONS`` below are the only hand-written parts.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
import random
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.core import Evaluator, Figure, Outcome, failure, mean, pearson

if TYPE_CHECKING:
    from twinchat.config import Settings
    from twinchat.domain.readers import RawRecord

VERSION = 1  # bump on any change to the protocol or scoring, so results are never mixed silently
PANEL = "twin2k-eval"
TWIN_PREFIX = "twin2k-"  # twinchat/importers/mappings/twin2k_profile.yaml: customer prefix
PERSONS, POPULATION = 400, 600

# dv_variables_summary.csv's study_name -> raw_studies/<folder>.
STUDIES = {
    "Accuracy Nudge": "accuracy_nudges",
    "Affective Primes": "affective_priming",
    "Consumer Minimalism": "consumer_minimalism",
    "context effects": "context_effects",
    "Defaults": "default_eric",
    "Digital certificates for luxury consumption": "digital_certification",
    "hiring algorithms": "hiring_algorithms",
    "idea evaluation": "idea_evaluation",
    "idea generation": "idea_generation",
    "infotainment news sharing": "infotainment",
    "Junk Fees": "junk_fees",
    "Obedient twins": "obedient_twins",
    "Preferences for redistribution": "preference_redistribution",
    "Privacy": "privacy",
    "Promiscuous donors": "promiscuous_donors",
    "quantitative intuition": "quantitative_intuition",
    "recommendation systems": "recommendation_algorithms",
    "Story Beliefs": "story_beliefs",
    "Targeting fairness": "targeting_fairness",
}

# Measures named otherwise than their export column: the columns, one per condition a person may have seen
# (hiring algorithms: the jobs under an algorithm's or a hiring team's process). Each person answered one.
ALIASES: dict[str, tuple[str, ...]] = {
    **{
        f"job{job}_item{item}": (f"{algorithm}_{item}", f"{team}_{item}")
        for job, (algorithm, team) in enumerate(
            (("Q27", "Q22"), ("Q28", "Q24"), ("Q29", "Q25"), ("Q30", "Q26")), 1
        )
        for item in range(1, 9)
    },
    "task 3 - S1": ("a1_1",),
    "task 3 - S2": ("a2_1",),
    "task 3 - S3": ("a3_1",),
    "Redistribution 1": ("GOVT_RESPONSIBILITY",),
    "Redistribution 2": ("HLTHTAX",),
    "Fairness": ("FAIR",),
    "Work vs Luck": ("GETAHEAD",),
    "Father education": ("FAEDUC",),
    "Trust": ("TRUST_GSS",),
}

# The human file's value of each exported code where the authors recoded it (None: not an answer, e.g.
# "Don't know"); checked against every person's answer at run time like any other coding.
_REVERSED_5 = {"1": 5.0, "2": 4.0, "3": 3.0, "4": 2.0, "5": 1.0, "6": None}
RECODED: dict[str, dict[str, float | None]] = {
    "Q9": {"1": 4.0, "2": 3.0, "3": 1.0, "4": 2.0},
    "Q14": {"1": 1.0, "2": 4.0, "3": 2.0, "4": 3.0},
    "Redistribution 1": _REVERSED_5,
    "Redistribution 2": _REVERSED_5,
    "Fairness": {"1": 3.0, "2": 1.0, "3": 2.0, "4": None},
    "Trust": {"1": 3.0, "2": 1.0, "3": 2.0, "4": None},
    "Work vs Luck": {"1": 1.0, "2": 2.0, "3": 3.0, "4": None},
    "Father education": {"1": 10.0, "2": 12.0, "3": 13.0, "4": 14.0, "5": 16.0, "6": 18.0},  # years
}

# Why a measure with no question of its own is not asked (found by joining response.csv with the human file).
_RECALL = "the mean of several items of the scale"
REASONS = {
    "gratitude": _RECALL,
    "lack of control": _RECALL,
    "gratitude_manipulation_check": "the mean of the three g_manip_check rows",
    "lack_of_control_manipulation_check": "the mean of the three c_manip_check rows",
    "choice_target_binary": "whether the person chose the target product, coded from the choice set of "
    "their condition",
    "choice_target_attraction": "whether the person chose the target, coded from their condition",
    "choice_target_compromise": "whether the person chose the target, coded from their condition",
    "target_behavior_green": "whether the person took the target action, coded against their condition's "
    "default",
    "target_behavior_organ": "whether the person took the target action, coded against their condition's "
    "default",
    "DV1": "the mean of the three rows of matrix DV1",
    "log_WTP": "the log of a typed willingness to pay",
    "DAT_perf": "a score of a free word-association task",
    "SSPT": "a score of a free creativity task",
    "percent_correct": "the share of correct answers",
    "fairness_average": "the mean of several fairness ratings",
    "reg_support": "the mean of two support items",
    "task 1 - attitude_change": "the difference between two slider answers (after minus before)",
    "task 2 - S1": "the mean of two items of the scenario (i1_1, i1_2)",
    "task 2 - S2": "the mean of two items of the scenario (i2_1, i2_2)",
    "task 2 - S3": "the mean of two items of the scenario (i3_1, i3_2)",
    "PPV": "one of six scenario versions (Q11_1, Q138_1, Q140_1, Q142_1 and two export columns both named "
    "Q2_1), its scenario in a separate element: which version a person saw is ambiguous",
    "Q_indiv_mean": _RECALL,
    "I_indiv_mean": _RECALL,
    "Q_org_mean": _RECALL,
    "I_org_mean": _RECALL,
    "scenario_close_QI": "whether the person's answer matched the quantitative-intuition answer, coded by "
    "the authors",
    "scenario_open_QI": "whether the person's answer matched the quantitative-intuition answer, coded by "
    "the authors",
    "usage_TikTok": "a loop-and-merge question (1_Q15), coded for the platform's users only",
    "usage_Netflix": "a loop-and-merge question (2_Q15), coded for the platform's users only",
    "pref_control_TikTok": "a count over several answers",
    "pref_control_Netflix": "a count over several answers",
}
for _name in ("algo_knowledge", "strategization_type1", "strategization_type2"):
    for _platform in ("TikTok", "Netflix"):
        REASONS[f"{_name}_{_platform}"] = "coded from options ticked in a multiple-answer question"
for _k in range(1, 21):
    REASONS[f"rating{_k}"] = (
        "the rating of the k-th idea shown; each person rated a different random set of ideas (loop and "
        "merge), so it is not one question across persons"
    )

_TAGS = re.compile(r"<[^>]+>")
_ROW = re.compile(r"(.+)_(\d+)$")
_CONTEXT_CHARS = 1000
# An answer event's text carries the question's end (where its wording is; the context comes first): embedding
# costs by length (a hiring vignette is 1,200 characters), and the structured answers read the full wording
# from the event's question attribute, which keeps it whole.
_EVENT_QUESTION_CHARS = 300


# --- the catalogue ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    label: str
    value: float


@dataclass(frozen=True)
class Version:
    """One question as a condition showed it: its export column, wording and options in display order."""

    column: str
    text: str
    options: tuple[Option, ...]

    def label_of(self, value: float) -> str | None:
        return next((o.label for o in self.options if o.value == value), None)


@dataclass
class Measure:
    """One row of dv_variables_summary.csv; asked when it is one question on a scale (``reason`` empty)."""

    study: str
    folder: str
    name: str
    low: float | None
    high: float | None
    versions: tuple[Version, ...] = ()
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def askable(self) -> bool:
        return not self.reason

    @property
    def bounds(self) -> tuple[float, float]:
        """DV_min and DV_max: what accuracy divides by."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.name} has no range in dv_variables_summary.csv")
        return self.low, self.high

    @property
    def values(self) -> set[float]:
        return {o.value for v in self.versions for o in v.options}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"study": self.study, "measure": self.name, "range": [self.low, self.high]}
        if self.reason:
            out["reason"] = self.reason
        out["versions"] = [
            {"column": v.column, "text": v.text, "options": {o.label: o.value for o in v.options}}
            for v in self.versions
        ]
        if self.notes:
            out["notes"] = self.notes
        return out


@dataclass
class Data:
    """Twin-2K-500 as the evaluation reads it: the catalogue, each person's values and the condition seen."""

    folder: Path
    measures: list[Measure]
    human: dict[str, dict[str, float]]  # person id -> measure -> value
    llm: dict[str, dict[str, float]]
    profiles: set[str]
    seen: dict[str, dict[str, str]]  # measure -> person id -> the export column the person answered

    def measure(self, name: str) -> Measure:
        return next(m for m in self.measures if m.name == name)


def load(folder: Path) -> Data:
    """Read the summary, the human and LLM files, the profiles' ids and every study's survey and answers."""
    post = folder / "post_metric_calculation"
    summary = _read_csv(post / "dv_variables_summary.csv")
    human = _values(post / "post_processing_caliberation" / "combined_dv_human.csv")
    llm = _values(post / "post_processing_caliberation" / "combined_dv_llm.csv")
    with (folder / "persona_profile" / "twin2k_flat.csv").open(encoding="utf-8", newline="") as handle:
        profiles = {row["pid"].strip() for row in csv.DictReader(handle)}
    columns = _header(post / "post_processing_caliberation" / "combined_dv_human.csv")
    names = Counter(row["DV_variable"] for row in summary)
    if max(names.values(), default=1) > 1:  # the hand-written tables below are keyed by the measure's name
        raise ValueError(f"dv_variables_summary.csv names a measure twice: {names.most_common(1)[0][0]!r}")
    measures, seen = [], {}
    surveys: dict[str, _Survey] = {}
    for line, row in enumerate(summary, start=2):
        study, name = row["study_name"], row["DV_variable"]
        if study not in STUDIES:
            raise ValueError(
                f"{post / 'dv_variables_summary.csv'}, line {line}: study_name {study!r} is not one of the "
                f"19 studies this evaluator maps to raw_studies/ ({', '.join(sorted(STUDIES))})"
            )
        measure = Measure(study, STUDIES[study], name, _float(row["DV_min"]), _float(row["DV_max"]))
        measures.append(measure)
        if measure.low is None or measure.high is None or measure.high <= measure.low:
            measure.reason = f"no range in dv_variables_summary.csv ({row['DV_min']}, {row['DV_max']})"
        elif name not in columns:
            measure.reason = "not a column of combined_dv_human.csv"
        if measure.reason:
            continue
        survey = surveys.get(measure.folder) or surveys.setdefault(
            measure.folder, _Survey(folder / "raw_studies" / measure.folder / "raw_data")
        )
        measure.versions, measure.reason = survey.versions(name)
        if measure.askable:
            seen[name] = _check(measure, survey, human)
    return Data(folder, measures, human, llm, profiles, seen)


class _Survey:
    """A study's survey.qsf (questions outside the trash, in block order) and its response.csv."""

    def __init__(self, raw: Path) -> None:
        self.path = raw / "survey.qsf"
        survey = json.loads(self.path.read_text(encoding="utf-8"))
        elements = survey["SurveyElements"]
        questions = {e["Payload"]["QuestionID"]: e["Payload"] for e in elements if e.get("Element") == "SQ"}
        self.by_tag: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.context: dict[str, str] = {}
        for block in _blocks(elements):
            if block.get("Type") == "Trash":
                continue
            shown: list[str] = []  # the descriptive texts since the last question, shown to everyone
            for item in block.get("BlockElements") or []:
                payload = questions.get(item.get("QuestionID", ""))
                if item.get("Type") != "Question" or payload is None:
                    continue
                if payload.get("QuestionType") == "DB":
                    if not payload.get("DisplayLogic"):
                        shown.append(_clean(payload.get("QuestionText", "")))
                    continue
                if payload.get("DataExportTag"):
                    self.by_tag[str(payload["DataExportTag"])].append(payload)
                    self.context[payload["QuestionID"]] = " ".join(t for t in shown if t)
                shown = []
        self.responses = raw / "response.csv"
        self._answers: dict[str, dict[str, str]] | None = None

    def versions(self, name: str) -> tuple[tuple[Version, ...], str]:
        """The measure's question in each condition, or why it is not one question on a scale."""
        columns = ALIASES.get(name, (name,))
        versions = []
        for column in columns:
            version, reason = self._version(column, RECODED.get(name))
            if version is None:
                return (), REASONS.get(name, reason)
            versions.append(version)
        return tuple(versions), ""

    def _version(self, column: str, recoded: Mapping[str, float | None] | None) -> tuple[Version | None, str]:
        row = None
        found = self.by_tag.get(column)
        if not found and (match := _ROW.fullmatch(column)) and match.group(1) in self.by_tag:
            found, row = self.by_tag[match.group(1)], match.group(2)
        if not found:
            return None, "no question or matrix row of survey.qsf is exported under this name"
        if len(found) > 1:
            return None, f"{len(found)} questions of survey.qsf share the export tag {column!r}"
        q = found[0]
        kind, selector = q.get("QuestionType"), str(q.get("Selector", ""))
        text = _clean(q.get("QuestionText", ""))
        if kind == "MC" and not selector.startswith("MA"):
            scale, order = q.get("Choices"), q.get("ChoiceOrder")
        elif (
            kind == "Matrix"
            and row is not None
            and q.get("Answers")
            and q.get("SubSelector") != "MultipleAnswer"
        ):
            rows = _choices(q.get("Choices"))
            row_order = [str(c) for c in q.get("ChoiceOrder") or rows]
            # Rows export as <tag>_<choice id>, or by position where the ids are not 1..n (a lone row "4").
            by_position = row_order[int(row) - 1] if 0 < int(row) <= len(row_order) else ""
            statement = rows.get(row) or rows.get(by_position)
            if statement is None:
                return None, f"matrix {q['DataExportTag']} has no row {row}"
            text = f"{text} - {_clean(statement)}"
            scale, order = q.get("Answers"), q.get("AnswerOrder")
        elif kind == "Matrix":
            return None, f"combines the {len(_choices(q.get('Choices')))} rows of matrix {q['DataExportTag']}"
        else:
            what = {"CS": "a percentage allocation over options (constant sum)", "TE": "a text entry"}
            return None, f"{what.get(str(kind), f'a {kind} question')}, not a choice on a scale"
        recode = {str(k): str(v) for k, v in (q.get("RecodeValues") or {}).items()}
        labels = _choices(scale)
        options = []
        for choice in [str(c) for c in order or []] or list(labels):
            if choice not in labels:
                continue
            code = recode.get(choice, choice)
            value = recoded.get(code) if recoded is not None else _float(code)
            label = _clean(labels[choice])
            if value is not None and label:
                options.append(Option(label, value))
        context = self.context.get(q["QuestionID"], "")
        if len(context) > _CONTEXT_CHARS:
            context = context[: _CONTEXT_CHARS - 1] + "…"
        text = f"{context}\n{text}" if context else text
        if "${" in text or any("${" in o.label for o in options):
            return None, "its wording pipes per-person data (${...}) that survey.qsf does not hold"
        if len(options) < 2 or len({o.label.lower() for o in options}) != len(options):
            return None, "fewer than two distinct options with a numeric code"
        return Version(column, text, tuple(options)), ""

    def answers(self) -> dict[str, dict[str, str]]:
        """response.csv: person id -> column -> exported code (Qualtrics: header, question, ImportId rows)."""
        if self._answers is None:
            with self.responses.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.reader(handle))
            header = rows[0]
            if "TWIN_ID" not in header:
                raise ValueError(f"{self.responses}: no TWIN_ID column; the person of a row is unknown")
            at = header.index("TWIN_ID")
            self._answers = {}
            for row in rows[3:]:
                person = _person(row[at]) if at < len(row) else None
                if person:
                    # A column name exported twice (privacy's Q2_1) keeps its first non-empty cell.
                    answers: dict[str, str] = {}
                    for name, cell in zip(header, row, strict=False):
                        if cell.strip() and name not in answers:
                            answers[name] = cell.strip()
                    self._answers[person] = answers
        return self._answers


def _check(measure: Measure, survey: _Survey, human: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """Check the coding against the data; a disagreement makes the measure not asked, with the reason.

    Every human value must be an option's value, and each person's exported code in response.csv must carry
    the person's human value. Returns the column each person answered (their condition's version).
    """
    values = {p: v[measure.name] for p, v in human.items() if measure.name in v}
    stray = sorted({v for v in values.values()} - measure.values)
    if stray:
        measure.reason = (
            f"human values {_few(stray)} are not among the options' values {_few(sorted(measure.values))}"
        )
        return {}
    low, high = measure.bounds
    outside = sorted(v for v in measure.values if not low <= v <= high)
    if outside:
        measure.notes.append(f"option values {_few(outside)} lie outside DV range {low:g}-{high:g}")
    elif min(measure.values) > low or max(measure.values) < high:
        measure.notes.append(
            f"options span {min(measure.values):g}-{max(measure.values):g}, DV range {low:g}-{high:g}: "
            "accuracy divides by the DV range, as the published figures do"
        )
    seen, wrong, unseen = {}, [], 0
    answers = survey.answers()
    for person, value in values.items():
        answered = [v for v in measure.versions if v.column in answers.get(person, {})]
        if not answered:
            unseen += 1
            continue
        version = answered[0]
        code = answers[person][version.column]
        coded = RECODED[measure.name].get(code) if measure.name in RECODED else _float(code)
        if coded != value:
            wrong.append(person)
        seen[person] = version.column
    if wrong:
        measure.reason = (
            f"{len(wrong)} of {len(values)} persons' codes in response.csv disagree with their human value"
        )
        return {}
    if unseen:
        measure.notes.append(f"{unseen} persons with a human value have no answer in response.csv")
    return seen


# --- design and asking --------------------------------------------------------------------------------------


@dataclass
class Design:
    persons: list[str]
    population: list[str]
    measures: list[Measure]
    pairs: list[tuple[str, Measure]]
    failures: list[dict[str, Any]]


def design(data: Data, *, persons: int, population: int, seed: int, measures: Sequence[str] = ()) -> Design:
    """The seeded persons and a disjoint population, the selected askable measures, and the pairs asked:
    (person, measure) where the person has a human and a published LLM value. A measure is kept when at least
    two sampled persons answered it (the leave-one-out baseline needs another) and, with a population, when
    one of the population did (the twins and the population baseline need one)."""
    eligible = sorted(data.profiles & set(data.human) & set(data.llm), key=_person_order)
    if persons < 1 or population < 0 or persons + population > len(eligible):
        raise ValueError(
            f"{len(eligible)} persons are in the profiles, the human and the LLM files; {persons} persons and "
            f"a population of {population} were asked for"
        )
    rng = random.Random(seed)
    rng.shuffle(eligible)
    sample, others = eligible[:persons], eligible[persons : persons + population]
    chosen = select(data, measures)
    kept, pairs, failures = [], [], []
    for m in chosen:
        mine = [
            p for p in sample if m.name in data.human[p] and m.name in data.llm[p] and p in data.seen[m.name]
        ]
        theirs = [p for p in others if m.name in data.human[p] and p in data.seen[m.name]]
        if len(mine) < 2 or (population and not theirs):
            failures.append(
                failure(
                    "pairs",
                    f"not asked: {len(mine)} sampled persons and {len(theirs)} of the population answered it "
                    "(at least 2, and 1 of a population, are needed)",
                    measure=m.name,
                )
            )
            continue
        kept.append(m)
        pairs += [(p, m) for p in mine]
    pairs.sort(key=lambda pm: (_person_order(pm[0]), pm[1].name))
    return Design(sample, others, kept, pairs, failures)


def select(data: Data, names: Sequence[str]) -> list[Measure]:
    """The askable measures named (a measure, a study name or a raw_studies folder), all when none is."""
    askable = [m for m in data.measures if m.askable]
    if not names:
        return askable
    chosen = [m for m in askable if {m.name, m.study, m.folder} & set(names)]
    known = {x for m in askable for x in (m.name, m.study, m.folder)}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"--measures {', '.join(unknown)}: not an askable measure, study or folder; askable are "
            f"{', '.join(sorted({m.folder for m in askable}))} and their measures (see catalogue.json)"
        )
    return chosen


def population_records(data: Data, plan: Design) -> Iterator[RawRecord]:
    """The population's answers to the asked measures, shaped as the twin2k_study mapping shapes them."""
    from twinchat.domain.readers import RawRecord

    for person in plan.population:
        for m in plan.measures:
            column = data.seen[m.name].get(person)
            if column is None or m.name not in data.human[person]:
                continue
            version = next(v for v in m.versions if v.column == column)
            label = version.label_of(data.human[person][m.name])
            twin = f"{TWIN_PREFIX}{person}"
            record = {
                "customer_id": twin,
                "event_id": f"{twin}-{m.folder}-{column}",
                "text": f"Q: {_tail(version.text, _EVENT_QUESTION_CHARS)} A: {label}",
                "source": "survey",
                "kind": "answer",
                "question_id": question_id(m, column),
                "question": version.text,
                "answer": label,
                "study": m.folder,
                "variable": column,
            }
            yield RawRecord(
                str(data.folder / "raw_studies" / m.folder / "raw_data" / "response.csv"), None, record
            )


def question_id(measure: Measure, column: str) -> str:
    return f"twin2k:{measure.folder}:{column}"  # the twin2k_study mapping's question_id


# --- scoring -----------------------------------------------------------------------------------------------

SERIES = {  # summary name -> the row column holding its value
    "twins": "twin_value",
    "published_llm": "llm_value",
    "baseline_loo_mean": "loo_value",
    "baseline_population_mean": "population_value",
}
CORRELATED = ("twins", "published_llm")  # the baselines give (nearly) everyone one value: no correlation


def accuracy(predicted: float, actual: float, low: float, high: float) -> float:
    """The dataset's accuracy: 1 - |a - b| / (DV_max - DV_min)."""
    return 1.0 - abs(predicted - actual) / (high - low)


def leave_one_out(values: Mapping[str, float]) -> dict[str, float]:
    """Each person's prediction: the mean of the other persons' values."""
    if len(values) < 2:
        raise ValueError(f"a leave-one-out mean needs 2 or more persons, got {len(values)}")
    total, n = sum(values.values()), len(values)
    return {p: (total - v) / (n - 1) for p, v in values.items()}


def fisher_mean_weighted(correlations: Sequence[tuple[float, int]]) -> float | None:
    """Correlations averaged through Fisher's z, each weighted by its number of persons: the published
    correlation_mean of average_metrics_by_specification.csv (r clipped to ±0.9999 as evals.core does)."""
    total = sum(n for _, n in correlations)
    if not total:
        return None
    z = sum(n * math.atanh(max(-0.9999, min(0.9999, r))) for r, n in correlations)
    return round(math.tanh(z / total), 4)


def score(
    rows: Sequence[Mapping[str, Any]], ranges: Mapping[str, tuple[float, float]]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Per measure and overall: mean accuracy per series, exact matches, correlations across persons.

    Overall accuracy is the mean over measures of each measure's mean over persons (as published); the
    correlation is the person-weighted Fisher-z mean over measures where it is defined. An undefined
    correlation (fewer than 3 persons, a constant side) is a failure with its reason.
    """
    by_measure: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        by_measure[r["measure"]].append(r)
    per_measure, failures = [], []
    correlations: dict[str, list[tuple[float, int]]] = {s: [] for s in CORRELATED}
    for name, group in by_measure.items():
        low, high = ranges[name]
        record: dict[str, Any] = {"measure": name, "study": group[0]["study"], "persons": len(group)}
        for series, column in SERIES.items():
            scored = [
                accuracy(r[column], r["human_value"], low, high) for r in group if r[column] is not None
            ]
            record[f"accuracy_{series}"] = mean(scored)
        for series in CORRELATED:
            r_ = pearson([g["human_value"] for g in group], [g[SERIES[series]] for g in group])
            record[f"correlation_{series}"] = r_
            if r_ is None:
                failures.append(failure(f"correlation.{series}", _undefined(group), measure=name))
            else:
                correlations[series].append((r_, len(group)))
        per_measure.append(record)
    summary: dict[str, Any] = {
        "accuracy": {
            s: mean([m[f"accuracy_{s}"] for m in per_measure if m[f"accuracy_{s}"] is not None])
            for s in SERIES
        },
        "correlation": {s: fisher_mean_weighted(correlations[s]) for s in CORRELATED},
        "correlation_defined": {s: len(correlations[s]) for s in CORRELATED},
        "exact_match": {
            s: mean([float(r[c] == r["human_value"]) for r in rows if r[c] is not None])
            for s, c in SERIES.items()
            if s in CORRELATED
        },
        "accuracy_over_pairs": {
            s: mean(
                [accuracy(r[c], r["human_value"], *ranges[r["measure"]]) for r in rows if r[c] is not None]
            )
            for s, c in SERIES.items()
        },
    }
    studies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in per_measure:
        studies[m["study"]].append(m)
    summary["accuracy_by_study"] = {
        study: {
            s: mean([m[f"accuracy_{s}"] for m in group if m[f"accuracy_{s}"] is not None]) for s in SERIES
        }
        for study, group in sorted(studies.items())
    }
    for s in CORRELATED:
        if not correlations[s]:
            failures.append(failure(f"correlation.{s}", "no measure has a defined correlation"))
    return summary, per_measure, failures


def _undefined(group: Sequence[Mapping[str, Any]]) -> str:
    if len(group) < 3:
        return f"undefined: {len(group)} persons (3 are needed)"
    side = "the people's answers" if len({g["human_value"] for g in group}) == 1 else "its answers"
    return f"undefined: {side} are the same for all {len(group)} persons"


# --- the evaluator ------------------------------------------------------------------------------------------


class Twin2k(Evaluator):
    """``twinchat eval twin2k``: twins of Twin-2K-500 persons against their answers and the published LLM twins.

    >>> Twin2k(persons=20).options["population"]
    600
    """

    name = "twin2k"
    version = VERSION
    title = "Twin fidelity on Twin-2K-500 (consumer studies, published LLM twins)"
    protocol = "../shared/BENCHMARKS.md section 2"

    def __init__(self, **options: Any) -> None:
        defaults = {"persons": PERSONS, "population": POPULATION, "measures": "", "seed": 0}
        super().__init__(**{**defaults, **{k: v for k, v in options.items() if v is not None}})

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--persons", type=int, default=PERSONS, help="persons whose twins are asked")
        parser.add_argument(
            "--population",
            type=int,
            default=POPULATION,
            help="other persons whose profiles and answers join the panel (0: the profiles alone)",
        )
        parser.add_argument(
            "--measures",
            default="",
            help="comma-separated measures, study names or raw_studies folders (default: every askable one)",
        )
        parser.add_argument("--data", type=Path, help="the Twin-2K-500 folder (default: DATA_DIR/twin2k)")
        parser.add_argument(
            "--llm-weight",
            type=float,
            help="weight of the LLM's option scores in the answers (default: TWINCHAT_SURVEY_LLM_WEIGHT)",
        )

    @classmethod
    def quick_options(cls) -> dict[str, Any]:
        return {"persons": 60, "population": 120}

    def run(self, out: Path, settings: Settings, *, progress: bool = True) -> Outcome:
        options = self.options
        folder = Path(options.get("data") or settings.data_dir / "twin2k")
        names = [n.strip() for n in str(options.get("measures") or "").split(",") if n.strip()]
        clock = time.perf_counter()
        data = load(folder)
        plan = design(
            data,
            persons=int(options["persons"]),
            population=int(options["population"]),
            seed=int(options["seed"]),
            measures=names,
        )
        (out / "catalogue.json").write_text(
            json.dumps([m.to_dict() for m in data.measures], indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        seconds = {"catalogue": round(time.perf_counter() - clock, 1)}
        if options.get("llm_weight") is not None:
            settings = settings.model_copy(update={"survey_llm_weight": float(options["llm_weight"])})
        with tempfile.TemporaryDirectory(prefix="twinchat-twin2k-") as home:
            rows, ingest = ask(
                data, plan, settings.model_copy(update={"home": Path(home)}), progress, seconds
            )
        summary, per_measure, failures = score(rows, {m.name: m.bounds for m in plan.measures})
        summary.update(calibration_summary(rows))
        summary.update(
            {
                "persons": len(plan.persons),
                "population": len(plan.population),
                "pairs": len(rows),
                "measures_asked": len(plan.measures),
                "catalogue": catalogue_counts(data),
                "evidence": dict(Counter(r["evidence"] for r in rows)),
                "llm_weight": settings.survey_llm_weight,
                "ingest": ingest,
                "seconds": seconds,
                "measures": per_measure,
            }
        )
        drawn = figures(out, rows, summary, per_measure, plan)
        return Outcome(summary, rows, drawn, notes(data, plan, summary), plan.failures + failures, HEADLINE)


HEADLINE = (
    "accuracy.twins",
    "accuracy.published_llm",
    "accuracy.baseline_loo_mean",
    "accuracy.baseline_population_mean",
    "correlation.twins",
    "correlation.published_llm",
    "pairs",
    "measures_asked",
)


def ask(
    data: Data, plan: Design, settings: Settings, progress: bool, seconds: dict[str, float]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Build the panel in a fresh TWINCHAT_HOME (profiles through the shipped mapping, the population's
    answers), then ask every pair through ``TwinService.choose``. One row per pair."""
    from tqdm import tqdm

    from twinchat.domain.survey import Question
    from twinchat.importers.mapping import MappedImport, load_mapping
    from twinchat.services import TwinService

    clock = time.perf_counter()
    service = TwinService.from_settings(settings)
    wanted = set(plan.persons) | set(plan.population)
    profile = Path(settings.home) / "twin2k_profiles.csv"  # this run's persons only, in the temporary home
    with (data.folder / "persona_profile" / "twin2k_flat.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        with profile.open("w", encoding="utf-8", newline="") as subset:
            writer = csv.DictWriter(subset, fieldnames=list(reader.fieldnames or []))
            writer.writeheader()
            writer.writerows(row for row in reader if row["pid"].strip() in wanted)
    imported = service.import_mapped(
        MappedImport(load_mapping("twin2k_profile"), [profile]), panel=PANEL, progress=progress
    )
    profile.unlink()
    answers = service.ingest_records(
        population_records(data, plan), panel=PANEL, progress=progress, label="population answers"
    )
    problems = imported["events"]["rejected"] + len(answers.rejected)
    if problems:
        raise RuntimeError(f"the panel did not ingest cleanly: {problems} records rejected")
    seconds["ingest"] = round(time.perf_counter() - clock, 1)

    clock = time.perf_counter()
    twins = [f"{TWIN_PREFIX}{p}" for p in plan.persons]
    model = service.choice_model(twins)
    loo = {
        m.name: leave_one_out({p: data.human[p][m.name] for p, mm in plan.pairs if mm is m})
        for m in plan.measures
    }
    population_mean = {
        m.name: mean([data.human[p][m.name] for p in plan.population if p in data.seen[m.name]])
        for m in plan.measures
    }
    rows = []
    for person, m in tqdm(plan.pairs, desc="asking twins", unit="answer", disable=None if progress else True):
        version = next(v for v in m.versions if v.column == data.seen[m.name][person])
        labels = tuple(o.label for o in version.options)
        answer = service.choose(
            f"{TWIN_PREFIX}{person}",
            Question(question_id(m, version.column), version.text, labels),
            model=model,
        )
        human, llm = data.human[person][m.name], data.llm[person][m.name]
        twin_value = next(o.value for o in version.options if o.label == answer.answer)
        human_label = version.label_of(human)
        row = {
            "person": person,
            "study": m.study,
            "measure": m.name,
            "question_id": question_id(m, version.column),
            "options": list(labels),
            "twin_answer": answer.answer,
            "twin_value": twin_value,
            "human_value": human,
            "human_answer": human_label,
            "llm_value": llm,
            "loo_value": round(loo[m.name][person], 4),
            "population_value": population_mean[m.name],
        }
        for series, column in SERIES.items():
            value = row[column]
            row[f"accuracy_{series}"] = None if value is None else round(accuracy(value, human, *m.bounds), 4)
        row.update(
            {
                "p_human": round(answer.distribution.get(human_label or "", 0.0), 4),
                "p_top": round(answer.distribution[answer.answer], 4),
                "evidence": answer.evidence,
            }
        )
        rows.append(row)
    seconds["ask"] = round(time.perf_counter() - clock, 1)
    return rows, {"profile_events": imported["events"]["stored"], "answer_events": answers.stored}


def calibration_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    from evals.plots import calibration

    table, ece = calibration([r["p_top"] for r in rows], [r["twin_value"] == r["human_value"] for r in rows])
    return {
        "calibration": {
            "ece": ece,
            "mean_p_top": mean([r["p_top"] for r in rows]),
            "mean_p_human": mean([r["p_human"] for r in rows]),
        }
    }


def catalogue_counts(data: Data) -> dict[str, Any]:
    askable = [m for m in data.measures if m.askable]
    return {
        "measures": len(data.measures),
        "askable": len(askable),
        "not_asked": len(data.measures) - len(askable),
        "askable_with_notes": sum(bool(m.notes) for m in askable),
        "not_asked_why": [
            {"measure": m.name, "study": m.study, "reason": m.reason} for m in data.measures if not m.askable
        ],
    }


# --- figures and notes -------------------------------------------------------------------------------------

_SHOWN = {
    "twins": "twins",
    "published_llm": "published LLM twins",
    "baseline_loo_mean": "others' mean (leave-one-out)",
    "baseline_population_mean": "population mean",
}


def figures(
    out: Path,
    rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    per_measure: Sequence[Mapping[str, Any]],
    plan: Design,
) -> list[Figure]:
    from evals import plots

    drawn = []
    plots.bars(
        out / "accuracy.png",
        {_SHOWN[s]: summary["accuracy"][s] for s in SERIES},
        title=f"Accuracy on {len(rows)} (person, measure) pairs, {len(per_measure)} measures",
        ylabel="1 - |a - b| / range, mean over measures",
    )
    drawn.append(
        Figure(
            "accuracy.png",
            "Accuracy: twins, published LLM twins, baselines",
            "Mean over measures of each measure's mean over persons, on the same pairs. The baselines answer "
            "every person the mean of the other sampled persons, or of the population.",
        )
    )
    plots.grouped_bars(
        out / "accuracy_by_study.png",
        {
            study: {_SHOWN[s]: v for s, v in values.items()}
            for study, values in summary["accuracy_by_study"].items()
        },
        title="Accuracy by study",
        ylabel="accuracy",
    )
    drawn.append(Figure("accuracy_by_study.png", "Accuracy by study"))
    plots.per_item(
        out / "accuracy_by_measure.png",
        {m["measure"]: m["accuracy_twins"] for m in per_measure},
        title="Twins' accuracy per measure (| published LLM twins)",
        xlabel="accuracy",
        reference={m["measure"]: m["accuracy_published_llm"] for m in per_measure},
        reference_label="published LLM twins",
    )
    drawn.append(
        Figure("accuracy_by_measure.png", "Accuracy per measure", "The 20 best and 20 worst measures.")
    )
    plots.reliability(
        out / "reliability.png",
        [r["p_top"] for r in rows],
        [r["twin_value"] == r["human_value"] for r in rows],
        title="Twins' top-choice probability against exact match",
    )
    drawn.append(
        Figure(
            "reliability.png",
            "Reliability of the twins' top choice",
            "Observed share of twins' answers equal to the person's, per bin of the probability the twin gave its "
            "answer; labels are bin sizes.",
        )
    )
    items_twins, items_llm = distribution_items(rows, plan)
    plots.distributions(out / "distributions.png", items_twins, title="Answers: twins and people")
    plots.distributions(
        out / "distributions_llm.png",
        items_llm,
        title="Answers: published LLM twins and people",
        labels=("published LLM twins", "people"),
    )
    drawn += [
        Figure(
            "distributions.png", "Answer distributions: twins and people", "The measures with most pairs."
        ),
        Figure("distributions_llm.png", "Answer distributions: published LLM twins and people"),
    ]
    both = [
        m
        for m in per_measure
        if m["correlation_twins"] is not None and m["correlation_published_llm"] is not None
    ]
    if both:
        plots.scatter(
            out / "correlation.png",
            {
                "measures": (
                    [m["correlation_published_llm"] for m in both],
                    [m["correlation_twins"] for m in both],
                )
            },
            title="Correlation with the people across persons, per measure",
            xlabel="published LLM twins",
            ylabel="twins",
        )
        drawn.append(
            Figure(
                "correlation.png",
                "Correlation per measure: twins against published LLM twins",
                f"{len(both)} measures where both are defined; the diagonal is where they would be equal.",
            )
        )
    return drawn


def distribution_items(
    rows: Sequence[Mapping[str, Any]], plan: Design, limit: int = 6
) -> tuple[dict[str, Any], dict[str, Any]]:
    """For the measures with most pairs: options, and the counts of twins' (LLM twins') and people's answers."""
    counts = Counter(r["measure"] for r in rows)
    twins, llm = {}, {}
    for name, _ in counts.most_common(limit):
        group = [r for r in rows if r["measure"] == name]
        measure = next(m for m in plan.measures if m.name == name)
        by_value = {o.value: o.label for o in measure.versions[0].options}
        options = [o.label for o in measure.versions[0].options]
        people = Counter(by_value[r["human_value"]] for r in group)
        twins[name] = (options, Counter(by_value[r["twin_value"]] for r in group), people)
        llm[name] = (
            options,
            Counter(by_value[r["llm_value"]] for r in group if r["llm_value"] in by_value),
            people,
        )
    return twins, llm


def notes(data: Data, plan: Design, summary: Mapping[str, Any]) -> list[str]:
    out = [
        f"Persons: {len(plan.persons)} drawn with the seed from the "
        f"{len(data.profiles & set(data.human) & set(data.llm))} in the profiles, the human and the LLM files; "
        f"their twins hold their profile alone (61 demographics and scores, twin2k_profile mapping). Their study "
        f"answers are never ingested.",
        f"Population: {len(plan.population)} other persons in the same panel, with their profiles and their "
        "answers to the asked measures: what the structured-answer model learns from (the answers of twins "
        "like this one). The published LLM twins saw the person's full persona and no one else's answers; the "
        "baselines see the others' answers and nothing of the person."
        if plan.population
        else "Population: none. No twin of the panel has answered a study question, so the structured-answer "
        "model has neither the question's answers nor twins like this one to draw on: every twin gets the "
        "uniform panel prior (evidence panel_only) and answers alike.",
        "Baselines have no correlation: the population mean is one value for everyone, and the leave-one-out "
        "mean correlates -1 with the person's answer by construction.",
    ]
    askable = [m for m in data.measures if m.askable]
    out.append(
        f"Catalogue: {len(askable)} of {len(data.measures)} measures are one question on a scale "
        f"(catalogue.json lists each with its options and values, and why the others are not asked); "
        f"{len(plan.measures)} were asked."
    )
    alike: dict[str, list[str]] = defaultdict(list)  # the 18 infotainment profiles share one note
    for m in askable:
        for note in m.notes:
            alike[f"({m.study}): {note}"].append(m.name)
    out += [f"{', '.join(names)} {note}" for note, names in alike.items()]
    out += published_context(data)
    return out


def published_context(data: Data) -> list[str]:
    """Which published run combined_dv_llm.csv is, and what the full published runs reached."""
    post = data.folder / "post_metric_calculation"
    lines = []
    joint = _read_csv(post / "joint_vector_metrics.csv")
    ours = {}
    for m in data.measures:
        if m.low is None or m.name not in {k for v in data.human.values() for k in v}:
            continue
        pairs = [
            (h[m.name], data.llm[p][m.name])
            for p, h in data.human.items()
            if m.name in h and m.name in data.llm.get(p, {})
        ]
        if len(pairs) >= 3:
            r_ = pearson([a for a, _ in pairs], [b for _, b in pairs])
            if r_ is not None:
                ours[m.name] = r_
    matches: Counter[str] = Counter()
    for row in joint:
        r_ = ours.get(row["variable_name"])
        if (
            r_ is not None
            and _float(row["correlation"]) is not None
            and abs(r_ - float(row["correlation"])) < 1e-3
        ):
            matches[row["specification_type"]] += 1
    spec = None
    if matches:
        spec, hits = matches.most_common(1)[0]
        lines.append(
            f"combined_dv_llm.csv is the published '{spec}' run: its correlation with the people on all persons "
            f"equals joint_vector_metrics.csv's for {hits} of {len(ours)} measures."
        )
    average = {
        row["specification_type"]: row for row in _read_csv(post / "average_metrics_by_specification.csv")
    }
    shown = [
        s for s in (spec, "temperature_zero", "demographics_only", "empty_persona", "random_benchmark") if s
    ]
    for s in dict.fromkeys(shown):
        if s in average:
            row = average[s]
            lines.append(
                f"Published, all persons, {row['total_observations']} measures, '{s}': accuracy "
                f"{float(row['current_accuracy_mean']):.4f}, correlation {float(row['correlation_mean']):.4f}."
            )
    return lines


# --- small helpers ------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _header(path: Path) -> set[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return set(next(csv.reader(handle)))


def _values(path: Path) -> dict[str, dict[str, float]]:
    """TWIN_ID -> measure -> value, for the non-empty cells of combined_dv_{human,llm}.csv."""
    out = {}
    for line, row in enumerate(_read_csv(path), start=2):
        person = _person(row.pop("TWIN_ID", ""))
        if person is None:
            raise ValueError(f"{path}, line {line}: TWIN_ID is not a person id")
        values = {}
        for k, v in row.items():
            if v is not None and v.strip():
                value = _float(v)
                if value is None:
                    raise ValueError(f"{path}, line {line}, column {k!r}: {v!r} is not a number")
                values[k] = value
        out[person] = values
    return out


def _person(text: str) -> str | None:
    """Person ids are written '57' in the profiles and '57.0' in the studies' files."""
    value = _float(text)
    return str(int(value)) if value is not None and value.is_integer() else None


def _person_order(person: str) -> int:
    return int(person)


def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _clean(text: Any) -> str:
    return " ".join(html.unescape(_TAGS.sub(" ", str(text))).split())


def _choices(options: Any) -> dict[str, str]:
    """Qualtrics choices, {"1": {"Display": ...}} or a list when ids are 1..n: id -> display text."""
    if isinstance(options, list):
        options = {str(i + 1): o for i, o in enumerate(options)}
    if not isinstance(options, dict):
        return {}
    return {str(k): str(v.get("Display", "")) if isinstance(v, dict) else "" for k, v in options.items()}


def _blocks(elements: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    for e in elements:
        if e.get("Element") == "BL":
            payload = e["Payload"]
            return list(payload.values()) if isinstance(payload, dict) else list(payload)
    return []


def _tail(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def _few(values: Sequence[float], n: int = 8) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:n])
    return shown + (", ..." if len(values) > n else "")
