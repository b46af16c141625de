"""Survey: (twin, question) answers per second for a panel, through ``TwinService.survey``.

The panel is real: GSS respondents (../shared/data/gss) with their wave 1 and 2 answers as history, imported as
survey events through ``TwinService.ingest_records`` (embedded and stored like any import; repeated answer
texts are encoded once). A quarter of them are asked multiple-choice questions whose answers their history
lacks (the asked items are withheld from them, as in the fidelity protocol), which the structured-answer model
answers from the panel: consent checks, the model, an audit entry per answer, all as ``twinchat survey`` does.

The reference, in the same run: the structured-answer model alone (``ChoiceModel.choose``) on the same pairs,
built once, in memory; the ratio says what the service around it costs. A few free-text questions, which
go through retrieval and the LLM, are measured apart: they cost two orders of magnitude more.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.core import (
    Measured,
    bench_settings,
    latency_ms,
    per_second,
    ratio,
    scratch,
    settings_config,
)

NAME = "survey"
VERSION = 1
HEADLINE = ("structured.answers_per_s", "structured.ratio_to_model", "free.answers_per_s")
PANEL = "bench-gss"
FREE = "How do you feel about your life these days?"


@dataclass(frozen=True)
class Size:
    persons: int  # twins in the panel
    asked_share: float = 0.25  # of them, asked the questions
    questions: int = 20  # multiple-choice items asked
    features: int = 100  # other items in every twin's history
    free: int = 3  # twins asked one free-text question
    seed: int = 0


FULL = Size(persons=200)
QUICK = Size(persons=24, questions=4, features=16, free=1)


def run(size: Size, *, progress: bool = True) -> Measured:
    from twinchat.domain.control import LOCAL_RESEARCH
    from twinchat.domain.survey import Question
    from twinchat.importers.gss import PROFILE_FIELDS, GssPanel
    from twinchat.services import TwinService

    with scratch(NAME) as folder:
        settings = bench_settings(folder / "home")
        gss = Path(settings.data_dir) / "gss"
        started = time.perf_counter()
        panel = GssPanel.load(gss / "panel06_long.csv.gz", gss / "variable_doc.csv")
        persons, options = _design(panel, size)
        rng = random.Random(f"{size.seed}:items")
        items = sorted(options)
        asked_items = rng.sample(items, size.questions)
        features = rng.sample(
            [v for v in items if v not in asked_items], min(size.features, len(items) - size.questions)
        )
        asked = persons[: max(1, round(len(persons) * size.asked_share))]
        service = TwinService.from_settings(settings)
        service.store.embeddings.cache_size = 200_000  # type: ignore[attr-defined]  # answer texts repeat
        records = panel.records(
            persons=persons,
            variables=[*asked_items, *features, *PROFILE_FIELDS],
            withheld={p: asked_items for p in asked},
        )
        report = service.ingest_records(records, panel=PANEL, progress=progress, label="GSS panel")
        build_s = time.perf_counter() - started

        questions = [Question(f"gss:{v}", panel.wording[v], options[v]) for v in asked_items]
        twins = [f"gss-{p}" for p in asked]
        gaps, done = [], []
        started = last = time.perf_counter()
        for record in service.survey(questions, twins, use=LOCAL_RESEARCH):
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            done.append(record)
        structured_s = last - started

        started = time.perf_counter()
        model = service.choice_model(twins)
        model_build_s = time.perf_counter() - started
        started = time.perf_counter()
        for twin in twins:
            for question in questions:
                model.choose(twin, question)
        model_s = time.perf_counter() - started

        free_gaps = []
        free_twins = twins[: size.free]
        last = time.perf_counter()
        started = last
        for _ in service.survey([Question("free", FREE)], free_twins, use=LOCAL_RESEARCH):
            now = time.perf_counter()
            free_gaps.append(now - last)
            last = now
        free_s = last - started

    service_rate = per_second(len(done), structured_s)
    model_rate = per_second(len(done), model_s + model_build_s)
    figures = {
        "structured": {
            "answers": len(done),
            "seconds": round(structured_s, 2),
            "answers_per_s": service_rate,
            "first_answer_ms": round(
                gaps[0] * 1000, 1
            ),  # consent checks and the model built from the registry
            "answer_ms": latency_ms(gaps[1:]),
            "evidence": dict(Counter(r.get("evidence", "free") for r in done)),
            "ratio_to_model": ratio(service_rate, model_rate),
        },
        "free": {
            "answers": len(free_gaps),
            "seconds": round(free_s, 2),
            "answers_per_s": per_second(len(free_gaps), free_s, digits=3),
            "answer_ms": latency_ms(free_gaps),
            "note": "the first free answer loads the LLM",
        },
    }
    reference = {
        "what": "ChoiceModel.choose alone on the same pairs, the model built once from the registry",
        "answers_per_s": model_rate,
        "model_build_ms": round(model_build_s * 1000, 1),
        "choose_ms_mean": round(model_s / len(done) * 1000, 3) if done else None,
    }
    config = {
        **asdict(size),
        "twins": len(persons),
        "twins_asked": len(twins),
        "items_eligible": len(items),
        "events": report.stored,
        "build_s": round(build_s, 1),
        "settings": settings_config(settings),
    }
    notes = [
        "structured: every (twin, question) pair of the asked twins, multiple choice, through TwinService.survey; "
        "answer_ms: the time between consecutive answers",
        "ratio_to_model: the service's answers per second over the bare model's (its build included)",
    ]
    return Measured(figures, reference, config, notes)


def _design(panel: Any, size: Size) -> tuple[list[str], dict[str, tuple[str, ...]]]:
    """The first persons (by id) who answered waves 1 and 2, and the items worth asking them: 2 to 7 distinct
    lettered labels in wave 2, answered by at least 40 % of them; options most frequent first."""
    rows = panel.rows
    both = set(rows.loc[rows["wave"] == 1, "firstid"]) & set(rows.loc[rows["wave"] == 2, "firstid"])
    wave2 = rows[rows["wave"] == 2].set_index("firstid")
    persons, answers = [], []
    for person in sorted(both, key=lambda p: (len(p), p)):
        found = panel.row_answers(wave2.loc[person].to_dict() if person in wave2.index else {})
        if found:
            persons.append(person)
            answers.append(found)
        if len(persons) == size.persons:
            break
    labels: dict[str, Counter[str]] = {}
    for found in answers:
        for variable, label in found.items():
            if any(c.isalpha() for c in label):
                labels.setdefault(variable, Counter())[label] += 1
    options = {
        v: tuple(label for label, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))
        for v, c in labels.items()
        if 2 <= len(c) <= 7 and sum(c.values()) >= 0.4 * len(persons)
    }
    return persons, options
