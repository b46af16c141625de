"""Correction adherence: ../shared/BENCHMARKS.md section 3, "after a customer corrects a fact, the share of
later questions touching that fact that follow the correction, and the share of unrelated facts left intact".

Real twins from real data, built and corrected with the code a user runs (TwinService.ingest_records,
correct, choose, retrieve, ask) on Chroma in a temporary folder, the configured embedder and LLM:

- GSS panel twins (the fidelity eval's persons, waves 1 and 2 as history). Each test twin corrects
  ``facts_per_twin`` facts it holds (marital status, party, religion, ...) to another value: the person's own
  wave-3 answer where it changed, else one drawn with the seed. Phrasings rotate over three styles: ``new``
  (names the new value in the survey's words), ``both`` (new and old value), ``plain`` (everyday words).
- Online Retail customers: each disputes one product of one order ("I never bought ...").

Per correction: whether the survey question and value were recognised; the multiple-choice answer to the
question after the correction; the evidence retrieved for paraphrased questions touching the fact (the
correction in, the old answers out); for a bounded number, the LLM's free answer (citations and, since the
bundled 135M model is weak, separately, whether its text states the new value). Unrelated facts: the twin's
other memories still valid, memories superseded that are not about the corrected fact (false supersessions),
and unrelated multiple-choice answers unchanged.

    twinchat eval corrections --seed 0 --twins 20      # writes evals/results/corrections/
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evals.core import Evaluator, Figure, Outcome
from evals.fidelity import Design, Protocol, design, history
from twinchat.config import Settings
from twinchat.domain.corrections import CorrectionPolicy
from twinchat.domain.readers import RawRecord
from twinchat.domain.survey import Question
from twinchat.importers.gss import PROFILE_FIELDS, GssPanel
from twinchat.importers.online_retail import OnlineRetailImport
from twinchat.ports import Embedder

if TYPE_CHECKING:
    from twinchat.domain.corrections import SurveyFix
    from twinchat.domain.survey import ChoiceAnswer
    from twinchat.services import TwinService

VERSION = 2  # bump on any change to facts, phrasings, questions or scoring, so results are never mixed
PANEL = "gss-corrections"
STYLES = ("new", "both", "plain")
RETAIL_STYLES = ("product", "order", "plain")


@dataclass(frozen=True)
class Fact:
    """A GSS item a twin can be corrected on: how its answers are said, how it is asked about in words.

    ``says`` puts an answer label in a sentence ("Never Married": "single and never married"); ``plain`` is a
    whole everyday statement per target label, which need not contain the label; ``mentions`` are regular
    expressions by which a free answer states a label (checked longest first, a match hides shorter ones).
    """

    variable: str
    targets: tuple[str, ...]  # labels a correction may move to
    says: Mapping[str, str]
    new: str  # template with {new}
    both: str  # template with {new} and {old}
    plain: Mapping[str, str]
    questions: tuple[str, ...]
    mentions: Mapping[str, str]

    def statement(self, style: str, old: str, new: str) -> str:
        if style == "plain":
            return self.plain[new]
        template = self.new if style == "new" else self.both
        return _sentence(template.format(new=self._say(new), old=self._say(old)))

    def _say(self, label: str) -> str:
        return self.says.get(label, label.lower())


FACTS = (
    Fact(
        "marital",
        ("Married", "Never Married", "Divorced", "Widowed", "Separated"),
        {"Never Married": "single and never married"},
        "Actually, I am {new}.",
        "That's not right: I am {new}, not {old}.",
        {
            "Married": "I got married last spring.",
            "Never Married": "I have never had a husband or a wife.",
            "Divorced": "My spouse and I split up and the divorce is final now.",
            "Widowed": "My husband passed away, so I live on my own now.",
            "Separated": "My wife and I live apart now; we separated last year.",
        },
        ("Are you married?", "What is your marital status?", "Do you live with a husband or a wife?"),
        {
            "Never Married": r"never (been )?married|single",
            "Divorced": r"divorc",
            "Widowed": r"widow|passed away",
            "Separated": r"separated|live apart",
            "Married": r"married",
        },
    ),
    Fact(
        "partyid",
        ("Strong Democrat", "Independent", "Strong Republican"),
        {
            "Strong Democrat": "a strong Democrat",
            "Not Str Democrat": "a Democrat",
            "Ind,near Dem": "an independent close to the Democrats",
            "Independent": "an independent",
            "Ind,near Rep": "an independent close to the Republicans",
            "Not Str Republican": "a Republican",
            "Strong Republican": "a strong Republican",
            "Other Party": "with another party",
        },
        "Actually, I think of myself as {new} now.",
        "I am {new} now, not {old}.",
        {
            "Strong Democrat": "These days I vote for the Democrats every single time.",
            "Independent": "I don't side with either party any more; I vote for the person.",
            "Strong Republican": "These days I vote for the Republicans every single time.",
        },
        ("Which political party do you support?", "Are you a Republican, a Democrat or an independent?"),
        {
            "Independent": r"independent|either party|no party",
            "Strong Democrat": r"democrat",
            "Not Str Democrat": r"democrat",
            "Strong Republican": r"republican",
            "Not Str Republican": r"republican",
        },
    ),
    Fact(
        "relig",
        # Not "None": GssPanel.load reads that label as missing (pandas' default NA values), so no twin holds it.
        ("Protestant", "Catholic", "Jewish", "Christian"),
        {"None": "none", "Other": "another religion", "Moslem/Islam": "Muslim"},
        "Correction: my religion is {new}.",
        "My religion is {new} now, not {old}.",
        {
            "Protestant": "I go to a Baptist church every Sunday now.",
            "Catholic": "I converted to Catholicism last year.",
            "Jewish": "I converted to Judaism last year.",
            "Christian": "I just call myself a follower of Jesus these days.",
        },
        ("What is your religion?", "Do you belong to a church or a religion?"),
        {
            "Protestant": r"protestant|baptist|methodist|lutheran",
            "Catholic": r"catholic",
            "Jewish": r"jewish|judaism",
            "None": r"no religion|not religious|any religion|atheist",
            "Christian": r"christian",
        },
    ),
    Fact(
        "cappun",
        ("Favor", "Oppose"),
        {"Favor": "favor", "Oppose": "oppose"},
        "Actually, I {new} the death penalty now.",
        "I {new} the death penalty now; I no longer {old} it.",
        {
            "Favor": "I now think murderers should be executed.",
            "Oppose": "I am against capital punishment now.",
        },
        ("What do you think about the death penalty?", "Should people convicted of murder be executed?"),
        {"Oppose": r"oppose|against", "Favor": r"favou?r|support"},
    ),
    Fact(
        "happy",
        ("Very Happy", "Pretty Happy", "Not Too Happy"),
        {},
        "Actually, I am {new} these days.",
        "These days I am {new}, not {old}.",
        {
            "Very Happy": "Life is wonderful for me these days.",
            "Pretty Happy": "I'm fairly content these days.",
            "Not Too Happy": "I have been miserable lately.",
        },
        ("How happy are you these days?", "How are things going in your life?"),
        {
            "Not Too Happy": r"not (too |very )?happy|unhappy|miserable",
            "Very Happy": r"very happy|wonderful",
            "Pretty Happy": r"pretty happy|fairly|content",
        },
    ),
    Fact(
        "health",
        ("Excellent", "Good", "Fair", "Poor"),
        {},
        "Actually, my health is {new} now.",
        "My health is {new} now, not {old}.",
        {
            "Excellent": "I am in great shape and never ill.",
            "Good": "I feel healthy, apart from the odd cold.",
            "Fair": "My health is so-so these days.",
            "Poor": "I have been seriously ill this year.",
        },
        ("How is your health?", "How would you describe your health these days?"),
        {
            "Excellent": r"excellent|great shape",
            "Good": r"\bgood\b|healthy",
            "Fair": r"\bfair\b|so-so",
            "Poor": r"\bpoor\b|\bill\b|sick",
        },
    ),
    Fact(
        "wrkstat",
        ("Working Fulltime", "Retired", "Keeping House"),
        {
            "School": "in school",
            "Unempl, Laid Off": "unemployed",
            "Temp not Working": "temporarily not working",
        },
        "Actually, I am {new} now.",
        "I am {new} now, not {old}.",
        {
            "Working Fulltime": "I have a full-time job now.",
            "Retired": "I stopped working and live on my pension now.",
            "Keeping House": "I stay at home and look after the house and family now.",
        },
        ("Are you working at the moment?", "What do you do for a living?"),
        {
            "Working Fulltime": r"full[- ]?time",
            "Working Parttime": r"part[- ]?time",
            "Retired": r"retire|pension",
            "Keeping House": r"keeping house|homemaker|stay at home|look after the house",
            "Unempl, Laid Off": r"unemploy|laid off|lost my job",
        },
    ),
)
FACTS_BY_VARIABLE = {f.variable: f for f in FACTS}


@dataclass
class Case:
    """One correction to make and everything needed to score it."""

    family: str  # "gss" or "retail"
    twin_id: str
    fact: str  # a GSS variable, or "purchase"
    style: str
    origin: str  # "wave 3" (the person's real later answer), "drawn" or "retail"
    old: str
    new: str
    statement: str
    targets: list[str]  # the twin's memories stating the corrected fact: these, and only these, should go
    questions: list[str]
    result: dict[str, Any] = field(default_factory=dict)


def plan_gss(plan: Design, *, seed: int, facts_per_twin: int, styles: Sequence[str] = STYLES) -> list[Case]:
    """Which test twin corrects which facts, to what, in which words: deterministic for a seed."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for person in plan.test:
        twin = f"gss-{person}"
        latest = {**plan.answers.get((person, 1), {}), **plan.answers.get((person, 2), {})}
        held = [f for f in FACTS if f.variable in latest]
        # Least used facts first, so every fact is exercised; ties broken by the seed.
        used = Counter(c.fact for c in cases)
        rng.shuffle(held)
        held.sort(key=lambda f: used[f.variable])
        for fact in held[:facts_per_twin]:
            old = latest[fact.variable]
            later = plan.answers.get((person, 3), {}).get(fact.variable)
            if later in fact.targets and later != old:
                new, origin = later, "wave 3"
            else:
                new, origin = rng.choice([t for t in fact.targets if t != old]), "drawn"
            style = styles[len(cases) % len(styles)]
            targets = [
                f"{twin}-w{w}-{fact.variable}"
                for w in (1, 2)
                if fact.variable in plan.answers.get((person, w), {})
            ]
            cases.append(
                Case(
                    "gss",
                    twin,
                    fact.variable,
                    style,
                    origin,
                    old,
                    new,
                    fact.statement(style, old, new),
                    targets,
                    list(fact.questions),
                )
            )
    return cases


def retail_cases(path: Path, *, customers: int, seed: int) -> tuple[list[RawRecord], list[Case]]:
    """Online Retail customers (5 to 40 orders), each disputing a product that is in exactly one order."""
    by_customer: dict[str, list[RawRecord]] = defaultdict(list)
    for item in OnlineRetailImport(path).records():
        if isinstance(item, RawRecord):
            by_customer[item.record["customer_id"]].append(item)
    rng = random.Random(seed)
    eligible = sorted(c for c, r in by_customer.items() if 5 <= len(r) <= 40)
    records: list[RawRecord] = []
    cases: list[Case] = []
    for customer in rng.sample(eligible, min(customers, len(eligible))):
        orders = [r.record for r in by_customer[customer] if r.record["kind"] == "order"]
        found_in: dict[str, set[str]] = defaultdict(set)
        for order in orders:
            for product in order["products"]:
                found_in[product].add(order["event_id"])
        once = sorted(p for p, ids in found_in.items() if len(ids) == 1)
        if not once:
            continue
        product = rng.choice(once)
        (order_id,) = found_in[product]
        order = next(o for o in orders if o["event_id"] == order_id)
        style = RETAIL_STYLES[len(cases) % len(RETAIL_STYLES)]
        name = product.strip().rstrip(".").lower()
        statement = {
            "product": f"I never bought the {name}; that was not my order.",
            "order": f"Correction: order {order['invoice']} was not mine, I did not place it.",
            "plain": f"Actually, the {name} was bought by someone else, not by me.",
        }[style]
        day = order["timestamp"][:10]
        questions = [f"Have you ever bought the {name}?", f"What did you order on {day}?"]
        records.extend(by_customer[customer])
        cases.append(
            Case(
                "retail",
                customer,
                "purchase",
                style,
                "retail",
                name,
                "not bought",
                statement,
                [order_id],
                questions,
            )
        )
    return records, cases


def mentioned(text: str, patterns: Mapping[str, str]) -> set[str]:
    """The labels a free answer states: longest matches first, each span counted once.

    >>> sorted(mentioned("I have never been married.", FACTS_BY_VARIABLE["marital"].mentions))
    ['Never Married']
    """
    found: set[str] = set()
    lowered = text.lower()
    spans = sorted(
        ((m.start(), m.end(), label) for label, p in patterns.items() for m in re.finditer(p, lowered)),
        key=lambda s: (s[0] - s[1], s[0]),
    )
    taken: list[tuple[int, int]] = []
    for start, end, label in spans:
        if any(start < b and a < end for a, b in taken):
            continue
        taken.append((start, end))
        found.add(label)
    return found


def run(
    *,
    seed: int = 0,
    twins: int = 20,
    population: int = 20,
    facts_per_twin: int = 2,
    unrelated_items: int = 10,
    free_answers: int = 8,
    customers: int = 8,
    styles: Sequence[str] = STYLES,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the twins in a temporary folder, correct them, score: the figures and one row per correction."""
    from tqdm import tqdm

    from twinchat.services import TwinService

    started = time.perf_counter()
    timings: dict[str, float] = {}
    settings = settings or Settings()
    gss, retail_file = (
        settings.data_dir / "gss",
        settings.data_dir / "online_retail" / "online_retail_sample.csv",
    )
    panel = GssPanel.load(gss / "panel06_long.csv.gz", gss / "variable_doc.csv")
    protocol = Protocol(test_persons=twins, train_persons=population, items_per_person=0, seed=seed)
    plan = _with_facts(design(panel, protocol))
    cases = plan_gss(plan, seed=seed, facts_per_twin=facts_per_twin, styles=styles)
    retail_records, retail = (
        retail_cases(retail_file, customers=customers, seed=seed) if customers else ([], [])
    )
    options = _options(plan, panel)
    timings["design"] = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="twinchat-corrections-") as home:
        settings = settings.model_copy(update={"home": Path(home)})
        service = TwinService.from_settings(settings, embedder=embedder)
        mark = time.perf_counter()
        report = service.ingest_records(
            history(panel, plan), panel=PANEL, progress=progress, label="GSS history"
        )
        report = service.ingest_records(retail_records, report=report)
        if report.rejected:
            raise RuntimeError(f"the histories did not ingest cleanly: {report.rejected[:3]}")
        timings["ingest"] = time.perf_counter() - mark

        mark = time.perf_counter()
        by_twin: dict[str, list[Case]] = defaultdict(list)
        for case in [*cases, *retail]:
            by_twin[case.twin_id].append(case)
        twin_rows = []
        for twin_id, mine in tqdm(
            by_twin.items(), desc="correcting twins", unit="twin", disable=None if progress else True
        ):
            twin_rows.append(
                _correct_twin(service, twin_id, mine, plan, panel, options, seed, unrelated_items)
            )
        timings["correct_and_choose"] = time.perf_counter() - mark

        mark = time.perf_counter()
        for case in [*cases, *retail]:
            case.result["evidence"] = [_evidence(service, case, q) for q in case.questions]
        timings["retrieve"] = time.perf_counter() - mark

        mark = time.perf_counter()
        asked = _interleave(cases, retail)[:free_answers]
        for i, case in enumerate(
            tqdm(asked, desc="free answers", unit="answer", disable=None if progress else True)
        ):
            # Paraphrases rotate over the corrections: a bounded budget still asks each of them.
            case.result["free"] = _free_answer(service, case, case.questions[i % len(case.questions)])
        timings["free_answers"] = time.perf_counter() - mark
        judge_active = service._judge_enabled

    timings["total"] = time.perf_counter() - started
    result = {
        "benchmark": "correction adherence (BENCHMARKS.md section 3)",
        "version": VERSION,
        "config": {
            "seed": seed,
            "twins": twins,
            "population": population,
            "facts_per_twin": facts_per_twin,
            "unrelated_items_per_twin": unrelated_items,
            "free_answers": free_answers,
            "retail_customers": customers,
            "styles": list(styles),
            "llm": settings.llm,
            "embedder": settings.embedder,
            "store": "chroma, a temporary folder",
            "correction_judge": settings.correction_judge,
            "judge_active": judge_active,
            "correction_policy": asdict(CorrectionPolicy()),
            "top_k": settings.top_k,
            "min_relevance": settings.min_relevance,
            "max_answer_tokens": settings.max_answer_tokens,
            "survey_weights": service.survey_weights.to_dict(),
            "panel_file": str(gss / "panel06_long.csv.gz"),
            "retail_file": str(retail_file),
        },
        "gss": summarize(cases, [r for r in twin_rows if r["family"] == "gss"]),
        "retail": summarize(retail, [r for r in twin_rows if r["family"] == "retail"]) if retail else None,
        "runtime": {
            **{f"{k}_seconds": round(v, 1) for k, v in timings.items()},
            "events_ingested": report.stored,
            "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()}",
        },
        "corrections": [_case_row(c) for c in [*cases, *retail]],
    }
    return result


def _correct_twin(
    service: TwinService,
    twin_id: str,
    cases: Sequence[Case],
    plan: Design,
    panel: GssPanel,
    options: Mapping[str, tuple[str, ...]],
    seed: int,
    unrelated_items: int,
) -> dict[str, Any]:
    """Ask, correct, ask again, for one twin; then which of its memories are still valid."""
    family = cases[0].family
    questions: dict[str, Question] = {}
    unrelated: list[str] = []
    if family == "gss":
        person = twin_id.removeprefix("gss-")
        latest = {**plan.answers.get((person, 1), {}), **plan.answers.get((person, 2), {})}
        corrected = {c.fact for c in cases}
        answered = sorted(
            v for v in options if v in latest and v not in corrected and 2 <= len(options[v]) <= 7
        )
        rng = random.Random(f"{seed}:{twin_id}")
        unrelated = sorted(rng.sample(answered, min(unrelated_items, len(answered))))
        questions = {
            v: Question(f"gss:{v}", panel.wording[v], options[v])
            for v in [*(c.fact for c in cases), *unrelated]
        }
    before = _choose_all(service, twin_id, questions)
    for case in cases:
        result = service.correct(twin_id, case.statement)
        fix = result.survey
        case.result.update(
            event_id=result.event_id,
            superseded=result.superseded,
            survey_fix=None if fix is None else {"question_id": fix.key, "answer": fix.answer},
            understood=_understood(case, fix),
        )
    after = _choose_all(service, twin_id, questions)

    rows = service.memories(twin_id)
    texts = {r["event_id"]: r["text"] for r in rows}
    for case in cases:
        false = [e for e in case.result["superseded"] if e not in case.targets]
        case.result["targets_superseded"] = [e for e in case.targets if e in case.result["superseded"]]
        case.result["false_supersessions"] = [
            {"event_id": e, "text": _clip(texts.get(e, ""), 160)} for e in false
        ]
        if case.fact in before:
            b, a = before[case.fact], after[case.fact]
            case.result["choice"] = {
                "before": b.answer,
                "after": a.answer,
                "p_new_before": round(b.distribution.get(case.new, 0.0), 4),
                "p_new_after": round(a.distribution.get(case.new, 0.0), 4),
                "evidence_after": a.evidence,
            }
    excluded = {e for c in cases for e in [*c.targets, c.result["event_id"]]}
    others = [r for r in rows if r["event_id"] not in excluded]
    return {
        "family": family,
        "twin_id": twin_id,
        "other_memories": len(others),
        "other_valid": sum(r["valid"] for r in others),
        "unrelated_choices": [
            {"item": v, "before": before[v].answer, "after": after[v].answer} for v in unrelated
        ],
    }


def _choose_all(
    service: TwinService, twin_id: str, questions: Mapping[str, Question]
) -> dict[str, ChoiceAnswer]:
    if not questions:
        return {}
    model = service.choice_model([twin_id])  # after a correction, a new model: the panel's answers changed
    return {v: service.choose(twin_id, q, model=model) for v, q in questions.items()}


def _understood(case: Case, fix: SurveyFix | None) -> str:
    """How the correction was read as a survey answer: right, wrong value, wrong question, or not at all."""
    if case.family != "gss":
        return "not a survey fact" if fix is None else "wrong question"
    if fix is None:
        return "none"
    if fix.key != f"gss:{case.fact}":
        return "wrong question"
    return "right" if fix.answer == case.new else "old value" if fix.answer == case.old else "wrong value"


def _evidence(service: TwinService, case: Case, question: str) -> dict[str, Any]:
    """What ask() would show the LLM for this question: is the correction there, is any stale memory?"""
    ids = [s.event.event_id for s in service.retrieve(case.twin_id, question)]
    return {
        "question": question,
        "correction_in": case.result["event_id"] in ids,
        "stale_in": [t for t in case.targets if t in ids],
        "n": len(ids),
    }


def _free_answer(service: TwinService, case: Case, question: str) -> dict[str, Any]:
    mark = time.perf_counter()
    answer = service.ask(case.twin_id, question)
    cited = [c.event_id for c in answer.citations]
    row: dict[str, Any] = {
        "question": question,
        "answer": _clip(answer.answer, 400),
        "abstained": answer.abstained,
        "cited": len(cited),
        "correction_cited": case.result["event_id"] in cited,
        "stale_cited": [t for t in case.targets if t in cited],
        "seconds": round(time.perf_counter() - mark, 1),
    }
    fact = FACTS_BY_VARIABLE.get(case.fact)
    if fact is not None:
        said = mentioned(answer.answer, fact.mentions)
        # Where the old and the new value are stated in the same words, the text cannot tell them apart.
        decidable = fact.mentions.get(case.new) != fact.mentions.get(case.old)
        row["states_new"] = case.new in said if decidable else None
        row["states_old"] = case.old in said if decidable else None
    return row


def summarize(cases: Sequence[Case], twins: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures, overall and by phrasing style and fact, each with its count."""
    summary = _figures(cases)
    others = sum(t["other_memories"] for t in twins)
    summary["unrelated_memories_valid"] = _share(sum(t["other_valid"] for t in twins), others)
    choices = [c for t in twins for c in t["unrelated_choices"]]
    if choices:
        summary["unrelated_choices_unchanged"] = _share(
            sum(c["before"] == c["after"] for c in choices), len(choices)
        )
        summary["unrelated_choices_changed"] = [
            {"twin_id": t["twin_id"], **c}
            for t in twins
            for c in t["unrelated_choices"]
            if c["before"] != c["after"]
        ]
    false = Counter(_variable(f["event_id"]) for c in cases for f in c.result["false_supersessions"])
    summary["false_supersessions_by_item"] = dict(false.most_common())
    summary["by_style"] = {
        s: _figures([c for c in cases if c.style == s]) for s in sorted({c.style for c in cases})
    }
    if len({c.fact for c in cases}) > 1:
        summary["by_fact"] = {
            f: _figures([c for c in cases if c.fact == f]) for f in sorted({c.fact for c in cases})
        }
    origins = {c.origin for c in cases}
    if len(origins) > 1:
        summary["by_origin"] = {o: _figures([c for c in cases if c.origin == o]) for o in sorted(origins)}
    return summary


def _figures(cases: Sequence[Case]) -> dict[str, Any]:
    n = len(cases)
    targets = sum(len(c.targets) for c in cases)
    figures: dict[str, Any] = {
        "corrections": n,
        "understood_as_survey_answer": dict(Counter(c.result["understood"] for c in cases)),
        "targets_superseded": _share(sum(len(c.result["targets_superseded"]) for c in cases), targets),
        "false_supersessions": sum(len(c.result["false_supersessions"]) for c in cases),
        "corrections_with_false_supersessions": _share(
            sum(bool(c.result["false_supersessions"]) for c in cases), n
        ),
    }
    chosen = [c for c in cases if "choice" in c.result]
    if chosen:
        figures["choice_follows_correction"] = _share(
            sum(c.result["choice"]["after"] == c.new for c in chosen), len(chosen)
        )
        understood = [c for c in chosen if c.result["understood"] == "right"]
        figures["choice_follows_when_understood"] = _share(
            sum(c.result["choice"]["after"] == c.new for c in understood), len(understood)
        )
        figures["choice_was_new_before"] = _share(
            sum(c.result["choice"]["before"] == c.new for c in chosen), len(chosen)
        )
        figures["choice_was_old_before"] = _share(
            sum(c.result["choice"]["before"] == c.old for c in chosen), len(chosen)
        )
    evidence = [e for c in cases for e in c.result.get("evidence", [])]
    if evidence:
        figures["evidence"] = {
            "questions": len(evidence),
            "follows_correction": _share(
                sum(e["correction_in"] and not e["stale_in"] for e in evidence), len(evidence)
            ),
            "correction_retrieved": _share(sum(e["correction_in"] for e in evidence), len(evidence)),
            "stale_retrieved": _share(sum(bool(e["stale_in"]) for e in evidence), len(evidence)),
        }
    free = [c.result["free"] for c in cases if "free" in c.result]
    if free:
        decided = [f for f in free if f.get("states_new") is not None]
        figures["free_answers"] = {
            "asked": len(free),
            "follows_correction": _share(
                sum(f["correction_cited"] and not f["stale_cited"] for f in free), len(free)
            ),
            "correction_cited": _share(sum(f["correction_cited"] for f in free), len(free)),
            "stale_cited": _share(sum(bool(f["stale_cited"]) for f in free), len(free)),
            "abstained": _share(sum(f["abstained"] for f in free), len(free)),
            "text_states_new_value": _share(sum(bool(f["states_new"]) for f in decided), len(decided)),
            "text_states_old_value": _share(sum(bool(f["states_old"]) for f in decided), len(decided)),
            "mean_seconds": round(sum(f["seconds"] for f in free) / len(free), 1),
        }
    return figures


def _case_row(case: Case) -> dict[str, Any]:
    row = asdict(case)
    row.update(row.pop("result"))
    return row


def _with_facts(plan: Design) -> Design:
    """The design with every fact's item in the history, eligible or not (partyid has 8 labels)."""
    extra = [f.variable for f in FACTS if f.variable not in plan.items and f.variable not in PROFILE_FIELDS]
    for answers in plan.answers.values():
        for variable in extra:
            if variable in answers and not re.search(r"[A-Za-z]", answers[variable]):
                del answers[variable]  # a numeric placeholder (0, -1), not an answer
    return replace(plan, items=[*plan.items, *extra])


def _options(plan: Design, panel: GssPanel) -> dict[str, tuple[str, ...]]:
    """Each item's answer labels in waves 1-2, most frequent first: the options it is asked with."""
    variables = [*plan.items, *(v for v in PROFILE_FIELDS if v in panel.wording)]
    counts: dict[str, Counter[str]] = {v: Counter() for v in variables}
    for (_, wave), answers in plan.answers.items():
        if wave in (1, 2):
            for v in variables:
                label = answers.get(v)
                if label is not None and re.search(r"[A-Za-z]", label):
                    counts[v][label] += 1
    return {v: tuple(label for label, _ in c.most_common()) for v, c in counts.items() if len(c) >= 2}


def _interleave(gss: Sequence[Case], retail: Sequence[Case]) -> list[Case]:
    """GSS corrections with a retail one after every third: a bounded budget of free answers covers both."""
    merged: list[Case] = []
    rest = list(retail)
    for i, case in enumerate(gss, start=1):
        merged.append(case)
        if i % 3 == 0 and rest:
            merged.append(rest.pop(0))
    return merged + rest


def _share(count: int, of: int) -> dict[str, Any]:
    return {"share": round(count / of, 4) if of else None, "count": count, "of": of}


def _variable(event_id: str) -> str:
    return event_id.rsplit("-", 1)[-1] if "-w" in event_id else "purchase"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


class Corrections(Evaluator):
    name = "corrections"
    version = VERSION
    title = "Correction adherence"
    protocol = "../shared/BENCHMARKS.md section 3 (corrections)"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--twins", type=int, default=20, help="GSS test twins that correct facts")
        parser.add_argument("--population", type=int, default=20, help="other GSS twins in their panel")
        parser.add_argument("--facts-per-twin", type=int, default=2)
        parser.add_argument("--unrelated-items", type=int, default=10, help="unrelated questions per twin")
        parser.add_argument("--free-answers", type=int, default=8, help="LLM answers in all (5-30 s each)")
        parser.add_argument("--customers", type=int, default=8, help="Online Retail customers (0: none)")
        parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLES), help="phrasings")
        parser.add_argument(
            "--judge", choices=("auto", "llm", "none"), help="TWINCHAT_CORRECTION_JUDGE for this run"
        )

    @classmethod
    def quick_options(cls) -> dict[str, Any]:
        return {
            "twins": 4,
            "population": 6,
            "facts_per_twin": 2,
            "unrelated_items": 4,
            "free_answers": 2,
            "customers": 2,
        }

    def run(self, out: Path, settings: Settings, *, progress: bool = True) -> Outcome:
        options = dict(self.options)
        judge = options.pop("judge", None)
        if judge:
            settings = settings.model_copy(update={"correction_judge": judge})
        result = run(settings=settings, progress=progress, **options)
        rows = result.pop("corrections")
        return Outcome(result, rows, _figures_drawn(out, result), _notes(result), [], HEADLINE)


HEADLINE = (
    "gss.choice_follows_correction",
    "gss.evidence.follows_correction",
    "gss.free_answers.follows_correction",
    "gss.unrelated_memories_valid",
    "gss.unrelated_choices_unchanged",
    "retail.targets_superseded",
    "retail.evidence.follows_correction",
    "retail.unrelated_memories_valid",
)


def _figures_drawn(out: Path, result: Mapping[str, Any]) -> list[Figure]:
    from evals import plots

    def share(figures: Mapping[str, Any], *path: str) -> float | None:
        value: Any = figures
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value["share"] if isinstance(value, Mapping) else None

    drawn = []
    gss = result["gss"]
    plots.bars(
        out / "adherence.png",
        {
            "choice follows": share(gss, "choice_follows_correction"),
            "evidence follows": share(gss, "evidence", "follows_correction"),
            "free answer cites": share(gss, "free_answers", "follows_correction"),
            "other memories valid": share(gss, "unrelated_memories_valid"),
            "unrelated choices same": share(gss, "unrelated_choices_unchanged"),
        },
        title=f"GSS twins: {gss['corrections']} corrections",
        ylabel="share",
    )
    drawn.append(
        Figure(
            "adherence.png",
            "Adherence after corrections, and damage to unrelated facts (GSS twins)",
            "The first three follow the correction; the last two should stay at 1.",
        )
    )
    for group in ("by_style", "by_fact"):
        if group in gss:
            plots.grouped_bars(
                out / f"gss_{group}.png",
                {
                    name: {
                        "choice follows": share(figures, "choice_follows_correction"),
                        "evidence follows": share(figures, "evidence", "follows_correction"),
                        "understood right": (
                            figures["understood_as_survey_answer"].get("right", 0) / figures["corrections"]
                        ),
                    }
                    for name, figures in gss[group].items()
                },
                title=f"GSS corrections {group.replace('_', ' ')}",
                ylabel="share",
            )
            drawn.append(Figure(f"gss_{group}.png", f"GSS corrections {group.replace('_', ' ')}"))
    retail = result.get("retail")
    if retail:
        plots.bars(
            out / "retail.png",
            {
                "disputed item superseded": share(retail, "targets_superseded"),
                "evidence follows": share(retail, "evidence", "follows_correction"),
                "free answer cites": share(retail, "free_answers", "follows_correction"),
                "other memories valid": share(retail, "unrelated_memories_valid"),
            },
            title=f"Online Retail twins: {retail['corrections']} disputed purchases",
            ylabel="share",
        )
        drawn.append(Figure("retail.png", "Online Retail: a disputed purchase"))
    return drawn


def _notes(result: Mapping[str, Any]) -> list[str]:
    config = result["config"]
    return [
        f"Correction judge: {config['correction_judge']} (active: {config['judge_active']}).",
        "understood_as_survey_answer counts whether the correction was recognised as a new answer to the "
        "right survey question (right), another one (wrong) or none.",
        "Free answers are bounded (--free-answers) because each is a full LLM answer; with the bundled 135M "
        "model the text often ignores the evidence it cites, so text_states_new_value is reported apart.",
    ]
