"""Twin fidelity on a GSS-format panel: ../shared/BENCHMARKS.md section 1, exactly.

Twins are built with the same ingest and survey code a user runs (TwinService.ingest_records, choose), in a
fresh TWINCHAT_HOME under the output folder. Writes DIR/predictions.csv and DIR/summary.json.
"""

from __future__ import annotations

import csv
import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinchat.config import Settings
from twinchat.domain.readers import RawRecord
from twinchat.domain.survey import Question
from twinchat.importers.gss import PROFILE_FIELDS, GssPanel, survey_record

VERSION = 1  # bump on any change to the protocol's implementation, so results are never mixed silently
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


def run(
    panel_path: Path,
    doc_path: Path,
    out: Path,
    *,
    protocol: Protocol,
    settings: Settings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    from twinchat.services import TwinService

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    panel = GssPanel.load(panel_path, doc_path)
    plan = design(panel, protocol)

    # 4. History: waves 1 and 2, eligible items and profile fields; a test person's held-out items nowhere.
    settings = settings or Settings()
    settings = settings.model_copy(update={"home": out / "home"})
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
    _write(out, rows, summary)
    return summary


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
        "evidence_counts": dict(Counter(r["evidence"] for r in rows)),
    }


def _write(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    with (out / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


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
