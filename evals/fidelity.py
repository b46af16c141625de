"""Twin fidelity on a GSS-format panel: ../shared/BENCHMARKS.md section 1, exactly.

Twins are built with the same ingest and survey code a user runs (TwinService.ingest_records, choose), in a
fresh TWINCHAT_HOME under the output folder. ``twinchat eval fidelity`` (the :class:`Fidelity` evaluator)
writes the results folder of :mod:`evals.core`: one row per (person, item), the summary and the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.core import Evaluator, Figure, Outcome, fisher_mean, pearson
from evals.gss_scales import scale_of
from twinchat.config import Settings
from twinchat.domain.readers import RawRecord
from twinchat.domain.survey import Question
from twinchat.importers.gss import PROFILE_FIELDS, GssPanel, survey_record

VERSION = 2  # bump on any change to the protocol's implementation, so results are never mixed silently
PANEL = "gss-fidelity"
_LETTER = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class Protocol:
    test_persons: int = 50
    train_persons: int = 150
    items_per_person: int = 12
    seed: int = 0
    min_share: float = 0.4
    min_labels: int = 2
    max_labels: int = 7


@dataclass
class Design:
    """Who is tested on what: the protocol's steps 1 to 3, before any twin exists."""

    test: list[str]
    train: list[str]
    items: list[str]
    options: dict[str, tuple[str, ...]]
    held_out: dict[str, list[str]]
    answers: dict[tuple[str, int], dict[str, str]] = field(repr=False, default_factory=dict)


def design(panel: GssPanel, protocol: Protocol) -> Design:
    rows = panel.rows
    answers: dict[tuple[str, int], dict[str, str]] = {}
    for record in rows.to_dict("records"):
        wave = record["wave"]
        if wave is None or str(wave) == "<NA>":
            continue
        answers[(record["firstid"], int(wave))] = panel.row_answers(record)
    # 1. Persons with a non-empty wave 3, shuffled with the seed.
    wave3 = sorted((p for (p, w), a in answers.items() if w == 3 and a), key=_person_order)
    rng = random.Random(protocol.seed)
    rng.shuffle(wave3)
    if len(wave3) < protocol.test_persons + protocol.train_persons:
        raise ValueError(
            f"{panel.path}: {len(wave3)} persons have a wave 3; {protocol.test_persons} test + "
            f"{protocol.train_persons} train were asked for"
        )
    test = wave3[: protocol.test_persons]
    train = wave3[protocol.test_persons : protocol.test_persons + protocol.train_persons]

    # 2. Eligible items.
    items, options = [], {}
    for variable in panel.wording:
        if variable not in rows.columns or panel.is_administrative(variable):
            continue
        if variable in PROFILE_FIELDS:
            continue
        labels = Counter(answers[(p, 3)][variable] for p in wave3 if variable in answers[(p, 3)])
        share = sum(labels.values()) / len(wave3)
        if protocol.min_labels <= len(labels) <= protocol.max_labels and share >= protocol.min_share:
            items.append(variable)
            # Most frequent first: ties in a prediction then fall to the commoner answer, deterministically.
            options[variable] = tuple(
                label for label, _ in sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))
            )

    # Unlabelled numeric codes (0, -1: not asked, not applicable) are not answers. A value counts when it has
    # letters or is one of the item's own labels (0 is a real answer to "how many ...").
    for values in answers.values():
        for variable in items:
            value = values.get(variable)
            if value is not None and not _LETTER.search(value) and value not in options[variable]:
                del values[variable]

    # 3. Held-out items: answered by the test person in both wave 2 and wave 3, drawn with the seed.
    held_out = {}
    for person in test:
        w2, w3 = answers.get((person, 2), {}), answers.get((person, 3), {})
        candidates = [v for v in items if v in w2 and v in w3]
        held_out[person] = sorted(rng.sample(candidates, min(protocol.items_per_person, len(candidates))))
    return Design(test, train, items, options, held_out, answers)


class Fidelity(Evaluator):
    name = "fidelity"
    version = VERSION
    title = "Twin fidelity on the GSS panel"
    protocol = "../shared/BENCHMARKS.md section 1"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--panel", type=Path, help="panel CSV(.gz), one row per person and wave (default: shared GSS)"
        )
        parser.add_argument("--doc", type=Path, help="variable documentation CSV (default: shared GSS)")
        parser.add_argument("--test-persons", type=int, default=Protocol.test_persons)
        parser.add_argument("--train-persons", type=int, default=Protocol.train_persons)
        parser.add_argument("--items-per-person", type=int, default=Protocol.items_per_person)

    @classmethod
    def quick_options(cls) -> dict[str, Any]:
        return {"test_persons": 10, "train_persons": 40, "items_per_person": 6}

    def run(self, out: Path, settings: Settings, *, progress: bool = True) -> Outcome:
        options = self.options
        gss = settings.data_dir / "gss"
        protocol = Protocol(
            test_persons=options.get("test_persons", Protocol.test_persons),
            train_persons=options.get("train_persons", Protocol.train_persons),
            items_per_person=options.get("items_per_person", Protocol.items_per_person),
            seed=options.get("seed", Protocol.seed),
        )
        panel = Path(options.get("panel") or gss / "panel06_long.csv.gz")
        doc = Path(options.get("doc") or gss / "variable_doc.csv")
        summary, rows = run(panel, doc, protocol=protocol, settings=settings, progress=progress)
        failures = summary.pop("failures")
        drawn = figures(out, rows, summary)  # adds the calibration error it draws to the summary
        return Outcome(summary, rows, drawn, notes(summary), failures, HEADLINE)


HEADLINE = (
    "accuracy",
    "retest",
    "normalized_accuracy",
    "majority_baseline",
    "demographic_baseline",
    "ordinal.correlation_twins",
    "ordinal.correlation_retest",
    "tvd_twins_mean",
    "tvd_retest_mean",
    "n_pairs",
)


def run(
    panel_path: Path,
    doc_path: Path,
    *,
    protocol: Protocol,
    settings: Settings | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Build the twins in a temporary folder, ask them, score: the summary and one row per (person, item)."""
    from twinchat.services import TwinService

    started = time.perf_counter()
    panel = GssPanel.load(panel_path, doc_path)
    plan = design(panel, protocol)

    # 4. History: waves 1 and 2, eligible items and profile fields; a test person's held-out items nowhere.
    settings = settings or Settings()
    home = tempfile.TemporaryDirectory(prefix="twinchat-fidelity-")
    settings = settings.model_copy(update={"home": Path(home.name)})
    service = TwinService.from_settings(settings)
    records = history(panel, plan)
    report = service.ingest_records(records, panel=PANEL, progress=progress, label="GSS history")
    if report.rejected:
        raise RuntimeError(f"the GSS history did not ingest cleanly: {report.rejected[:3]}")
    ingest_seconds = time.perf_counter() - started

    # 5. Ask: every held-out question, multiple choice over the item's wave-3 labels, through the survey code.
    twin = {p: f"gss-{p}" for p in plan.test + plan.train}
    model = service.choice_model([twin[p] for p in plan.test])
    rows: list[dict[str, Any]] = []
    pairs = [(p, v) for p in plan.test for v in plan.held_out[p]]
    from tqdm import tqdm

    for person, variable in tqdm(
        pairs, desc="asking twins", unit="answer", disable=None if progress else True
    ):
        question = Question(f"gss:{variable}", panel.wording[variable], plan.options[variable])
        answer = service.choose(twin[person], question, model=model)
        rows.append(
            {
                "person_id": person,
                "item": variable,
                "options": json.dumps(list(plan.options[variable])),
                "prediction": answer.answer,
                "actual": plan.answers[(person, 3)][variable],
                "retest": plan.answers[(person, 2)][variable],
                "p_prediction": round(answer.distribution[answer.answer], 4),
                "p_actual": round(answer.distribution.get(plan.answers[(person, 3)][variable], 0.0), 4),
                "evidence": answer.evidence,
                "majority": _majority(plan, variable, plan.train),
                "demographic": _demographic(plan, person, variable),
                "distribution": json.dumps(answer.distribution),
            }
        )

    summary = score(rows)
    summary.update(
        {
            "protocol": {**protocol.__dict__, "version": VERSION},
            "n_test_persons": len(plan.test),
            "n_train_persons": len(plan.train),
            "n_eligible_items": len(plan.items),
            "events_ingested": report.stored,
            "weights": service.survey_weights.to_dict(),
            "ingest_seconds": round(ingest_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "panel_file": str(panel_path),
        }
    )
    home.cleanup()
    return summary, rows


def history(panel: GssPanel, plan: Design) -> Iterator[RawRecord]:
    """Step 4's events, from the cleaned answers: waves 1-2, eligible items and profile, minus held-out items."""
    variables = [*plan.items, *(v for v in PROFILE_FIELDS if v in panel.wording)]
    for person in plan.test + plan.train:
        hidden = set(plan.held_out.get(person, ()))
        for wave in (1, 2):
            values = plan.answers.get((person, wave), {})
            for variable in variables:
                if variable in values and variable not in hidden:
                    record = survey_record(
                        f"gss-{person}", variable, panel.wording[variable], values[variable], wave
                    )
                    yield RawRecord(str(panel.path), None, record)


def score(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Step 6: accuracy, retest ceiling, normalized accuracy, baselines, distribution distance per item."""
    n = len(rows)
    if n == 0:
        raise ValueError("no (person, item) pairs to score")

    def share(column: str) -> float:
        return sum(r[column] == r["actual"] for r in rows) / n

    accuracy, retest = share("prediction"), share("retest")
    majority, demographic = share("majority"), share("demographic")
    by_item: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_item.setdefault(r["item"], []).append(r)
    tvd_twins = [_tvd([r["prediction"] for r in g], [r["actual"] for r in g]) for g in by_item.values()]
    tvd_majority = [_tvd([r["majority"] for r in g], [r["actual"] for r in g]) for g in by_item.values()]
    tvd_retest = [_tvd([r["retest"] for r in g], [r["actual"] for r in g]) for g in by_item.values()]
    ordinal, failures = ordinal_correlations(rows)
    brier = (
        sum(
            sum((p - (o == r["actual"])) ** 2 for o, p in json.loads(r["distribution"]).items()) for r in rows
        )
        / n
    )
    return {
        "accuracy": round(accuracy, 4),
        "retest": round(retest, 4),
        "normalized_accuracy": round(accuracy / retest, 4) if retest else None,
        "majority_baseline": round(majority, 4),
        "demographic_baseline": round(demographic, 4),
        "normalized_majority_baseline": round(majority / retest, 4) if retest else None,
        "normalized_demographic_baseline": round(demographic / retest, 4) if retest else None,
        "n_pairs": n,
        "n_items_asked": len(by_item),
        "mean_p_actual": round(sum(r["p_actual"] for r in rows) / n, 4),
        "brier": round(brier, 4),
        "tvd_twins_mean": round(sum(tvd_twins) / len(tvd_twins), 4),
        "tvd_majority_mean": round(sum(tvd_majority) / len(tvd_majority), 4),
        "tvd_retest_mean": round(sum(tvd_retest) / len(tvd_retest), 4),
        "ordinal": ordinal,
        "evidence_counts": dict(Counter(r["evidence"] for r in rows)),
        "failures": failures,
    }


def ordinal_correlations(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Section 1's correlation for ordinal items: answers as positions on the item's scale (0 to 1).

    Per item across its persons where it has at least 3 pairs with spread (averaged with Fisher's z), and
    pooled over every ordinal pair, for the twins, the person's own wave 2 (retest) and the demographic
    baseline. A correlation that is undefined (a constant side) is a failure with its reason, never a NaN.
    """
    from evals.core import failure

    positions: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["item"] not in positions:
            scale = scale_of(json.loads(r["options"]))
            if scale is not None:
                positions[r["item"]] = scale
    pairs = [r for r in rows if r["item"] in positions and r["retest"] in positions[r["item"]]]
    figures: dict[str, Any] = {"items": len({r["item"] for r in pairs}), "pairs": len(pairs)}
    failures = []
    for column in ("prediction", "retest", "demographic"):
        name = "twins" if column == "prediction" else column
        xs = [positions[r["item"]][r["actual"]] for r in pairs]
        ys = [positions[r["item"]][r[column]] for r in pairs]
        pooled = pearson(xs, ys)
        if pooled is None:
            failures.append(
                failure(
                    f"ordinal.correlation_{name}", "undefined: fewer than 3 pairs or no spread", n=len(xs)
                )
            )
        figures[f"correlation_{name}"] = pooled
        per_item = []
        for item in sorted({r["item"] for r in pairs}):
            group = [r for r in pairs if r["item"] == item]
            r_item = pearson(
                [positions[item][g["actual"]] for g in group], [positions[item][g[column]] for g in group]
            )
            if r_item is not None:
                per_item.append(r_item)
        figures[f"per_item_fisher_{name}"] = fisher_mean(per_item)
        figures[f"per_item_defined_{name}"] = len(per_item)
        if not per_item:
            failures.append(
                failure(f"ordinal.per_item_fisher_{name}", "no item has 3 or more pairs with spread")
            )
    return figures, failures


def _person_order(person: str) -> tuple[int, str]:
    return (int(person), person) if person.isdigit() else (0, person)


def _latest(plan: Design, person: str, variable: str) -> str | None:
    """A train person's latest answer the twins can see (history is waves 1 and 2)."""
    for wave in (2, 1):
        value = plan.answers.get((person, wave), {}).get(variable)
        if value:
            return value
    return None


def _majority(plan: Design, variable: str, persons: Sequence[str]) -> str:
    counts = Counter(a for p in persons if (a := _latest(plan, p, variable)) in plan.options[variable])
    if not counts:
        return plan.options[variable][0]
    return max(plan.options[variable], key=lambda o: (counts[o], -plan.options[variable].index(o)))


def _cell(plan: Design, person: str) -> tuple[str, str, str]:
    """Demographic cell: sex, age band, and degree (high school or less vs more), from the latest wave seen."""
    sex = _latest(plan, person, "sex") or "?"
    age_text = _latest(plan, person, "age") or ""
    age = int(age_text) if age_text.isdigit() else None
    band = "?" if age is None else "<35" if age < 35 else "35-54" if age < 55 else "55+"
    degree = _latest(plan, person, "degree") or "?"
    schooling = (
        "hs-or-less" if degree in ("Lt High School", "High School") else "more" if degree != "?" else "?"
    )
    return sex, band, schooling


def _demographic(plan: Design, person: str, variable: str) -> str:
    cell = _cell(plan, person)
    peers = [p for p in plan.train if _cell(plan, p) == cell]
    has_answer = any(_latest(plan, p, variable) in plan.options[variable] for p in peers)
    return _majority(plan, variable, peers if has_answer else plan.train)


def _tvd(predicted: Sequence[str], actual: Sequence[str]) -> float:
    n = len(actual)
    p, q = Counter(predicted), Counter(actual)
    return 0.5 * sum(abs(p[k] / n - q[k] / n) for k in set(p) | set(q))


def figures(out: Path, rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> list[Figure]:
    """Accuracy against the ceiling and baselines, per item, calibration, and answer distributions."""
    from evals import plots

    drawn = []
    plots.bars(
        out / "accuracy.png",
        {
            "twins": summary["accuracy"],
            "majority": summary["majority_baseline"],
            "demographic cell": summary["demographic_baseline"],
        },
        title=f"Accuracy on {summary['n_pairs']} held-out (person, item) pairs",
        ylabel="share equal to the wave-3 answer",
        ceiling=summary["retest"],
        ceiling_label="retest (wave 2 = wave 3)",
    )
    drawn.append(
        Figure(
            "accuracy.png",
            "Accuracy against the human ceiling and the baselines",
            "The dashed line is the people's own test-retest agreement; baselines answer from the train "
            "persons' latest answers.",
        )
    )
    by_item: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_item.setdefault(r["item"], []).append(r)
    shown = {k: g for k, g in by_item.items() if len(g) >= 3} or by_item
    plots.per_item(
        out / "per_item.png",
        {k: sum(r["prediction"] == r["actual"] for r in g) / len(g) for k, g in shown.items()},
        title="Accuracy per item (items asked of 3 or more persons)",
        xlabel="share equal to the wave-3 answer",
        reference={k: sum(r["retest"] == r["actual"] for r in g) / len(g) for k, g in shown.items()},
        reference_label="retest",
    )
    drawn.append(Figure("per_item.png", "Accuracy per item", "Bars: twins; marks: the people's retest."))
    ece = plots.reliability(
        out / "reliability.png",
        [r["p_prediction"] for r in rows],
        [r["prediction"] == r["actual"] for r in rows],
        title="Calibration of the twins' chosen answers",
    )
    summary["calibration_ece"] = ece
    drawn.append(
        Figure(
            "reliability.png",
            "Reliability diagram",
            f"Probability the twin gave its chosen answer against how often that answer was the person's "
            f"(expected calibration error {ece:.3f}; numbers are pairs per bin).",
        )
    )

    def ordered(item: str) -> list[str]:
        options = json.loads(by_item[item][0]["options"])  # most frequent first
        scale = scale_of(options)
        return sorted(options, key=lambda o: scale[o]) if scale else options

    def rank(r: dict[str, Any], column: str) -> str:
        options = json.loads(r["options"])
        index = options.index(r[column]) if r[column] in options else 3
        return ("1st", "2nd", "3rd", "4th+")[min(index, 3)]

    panels = {
        "all items: answer's frequency rank": (
            ["1st", "2nd", "3rd", "4th+"],
            Counter(rank(r, "prediction") for r in rows),
            Counter(rank(r, "actual") for r in rows),
        )
    }
    for k in sorted(by_item, key=lambda k: (-len(by_item[k]), k))[:8]:
        panels[k] = (
            ordered(k),
            Counter(r["prediction"] for r in by_item[k]),
            Counter(r["actual"] for r in by_item[k]),
        )
    plots.distributions(
        out / "distributions.png",
        panels,
        title="Answer distributions: twins against the people (wave 3)",
    )
    drawn.append(
        Figure(
            "distributions.png",
            "Answer distributions, twins against people",
            "First panel: over all pairs, how often the answer was the item's most common option, its second "
            "and so on (twins that all answer alike pile up on 1st). Then the most asked items, ordinal "
            "scales in order.",
        )
    )
    return drawn


def notes(summary: dict[str, Any]) -> list[str]:
    ordinal = summary["ordinal"]
    return [
        f"Normalized accuracy (accuracy / retest) {summary['normalized_accuracy']}; Park et al. (2024) "
        "reached 0.85 on GSS items with GPT-4o and two-hour interviews.",
        f"Ordinal items: {ordinal['items']} items, {ordinal['pairs']} pairs, answers placed on the scales of "
        "evals/gss_scales.py. Per-item correlations need 3 or more persons with spread per item; with 12 "
        "items drawn per person from hundreds, few items have that, so the pooled figure is the headline.",
        "Total variation distance per item compares answer shares among the persons asked that item; "
        "tvd_retest_mean is the people's wave 2 against their wave 3, the human reference.",
    ]
