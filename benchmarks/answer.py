"""Answer: time to first token and total time of a twin's answer, split into the LLM's part and the rest.

Twins of the most active Online Retail customers are built as ``twinchat demo`` builds them (one event per
invoice, the real embedder, Chroma), then each is asked questions its history speaks to, through
``TwinService.ask_stream`` (what ``twinchat ask --stream``, the API and the studio call). The LLM's part is the
time spent inside the chat model's own generator, and nothing else: its time to the first piece and its
whole generation. Everything else (consent check, retrieval, profile, prompt, citations, audit) is timed
where it is spent; ``other`` is what is left. The first answer loads the LLM and is reported on its own.
Questions the history does not answer are abstained from without an LLM call: they are reported apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.core import (
    Measured,
    Stopwatch,
    bench_settings,
    latency_ms,
    online_retail_csv,
    per_second,
    rss_mib,
    scratch,
    settings_config,
    share,
)
from evals.bench_api import OFF_TOPIC, ON_TOPIC

NAME = "answer"
VERSION = 1
HEADLINE = (
    "answered.total_ms.p50",
    "answered.ttft_ms.p50",
    "answered.outside_llm_share",
    "abstained.total_ms.p50",
    "cold_first_answer_s",
)
QUESTIONS = ON_TOPIC + (
    "When did you last order from us?",
    "Do you buy anything for the kitchen?",
)


@dataclass(frozen=True)
class Size:
    twins: int
    questions: int  # on-topic questions per twin
    off_topic: int = 1  # off-topic questions per twin (usually abstained from)
    seed: int = 0


FULL = Size(twins=10, questions=3)
QUICK = Size(twins=2, questions=1)


class _Parts:
    """Stopwatches on the service's steps, reset for each answer."""

    names = ("authorize", "retrieve", "profile", "prompt", "audit")

    def __init__(self, service: Any) -> None:
        self.watches = {name: Stopwatch() for name in self.names}
        service.authorize = self.watches["authorize"].wrap(service.authorize)
        service.retrieve = self.watches["retrieve"].wrap(service.retrieve)
        service.profile = self.watches["profile"].wrap(service.profile)
        service.prompter.build = self.watches["prompt"].wrap(service.prompter.build)
        service._audit = self.watches["audit"].wrap(service._audit)

    def reset(self) -> None:
        for watch in self.watches.values():
            watch.seconds, watch.calls = 0.0, 0

    def seconds(self) -> dict[str, float]:
        return {name: watch.seconds for name, watch in self.watches.items()}


def _timed_chat_model(model: Any) -> Any:
    """The chat model with the time inside its own generator measured: ``llm`` (all of it), ``llm_first``."""
    from twinchat.ports import ChatModel

    class Timed(ChatModel):
        name = model.name

        def __init__(self) -> None:
            self.seconds = 0.0
            self.first: float | None = None
            self.pieces = 0

        def stream(
            self, messages: Sequence[Any], *, max_tokens: int, temperature: float = 0.0
        ) -> Iterator[str]:
            pieces = iter(model.stream(messages, max_tokens=max_tokens, temperature=temperature))
            done = object()
            while True:
                started = time.perf_counter()
                piece = next(pieces, done)
                self.seconds += time.perf_counter() - started
                if piece is done:
                    return
                if self.first is None:
                    self.first = self.seconds
                self.pieces += 1
                yield piece  # type: ignore[misc]

    return Timed()


def run(size: Size, *, progress: bool = True) -> Measured:
    import random

    from twinchat.domain.models import Answer
    from twinchat.importers.online_retail import OnlineRetailImport
    from twinchat.services import TwinService

    with scratch(NAME) as folder:
        settings = bench_settings(folder / "home")
        service = TwinService.from_settings(settings)
        started = time.perf_counter()
        importer = OnlineRetailImport(online_retail_csv(settings), customers=size.twins)
        report = service.ingest_records(importer.records(), panel="bench", progress=progress, label="twins")
        build_s = time.perf_counter() - started
        twins = sorted(t.twin_id for t in service.twins(panel="bench"))

        llm = _timed_chat_model(service.chat_model)
        service.chat_model = llm  # type: ignore[misc]
        parts = _Parts(service)
        rng = random.Random(size.seed)
        asks = [(t, q, True) for t in twins for q in rng.sample(QUESTIONS, size.questions)]
        asks += [(t, q, False) for t in twins for q in rng.sample(OFF_TOPIC, size.off_topic)]
        rss_before = rss_mib()
        rows = []
        for i, (twin, question, on_topic) in enumerate(asks):
            parts.reset()
            llm.seconds, llm.first, llm.pieces = 0.0, None, 0
            first: float | None = None
            answer: Answer | None = None
            started = time.perf_counter()
            for piece in service.ask_stream(twin, question):
                if first is None and isinstance(piece, str):
                    first = time.perf_counter() - started
                if isinstance(piece, Answer):
                    answer = piece
            total = time.perf_counter() - started
            assert answer is not None and first is not None
            steps = parts.seconds()
            rows.append(
                {
                    "cold": i == 0,
                    "on_topic": on_topic,
                    "abstained": answer.abstained,
                    "total": total,
                    "ttft": first,
                    "llm": llm.seconds,
                    "llm_first": llm.first,
                    "pieces": llm.pieces,
                    **steps,
                    "other": total - llm.seconds - sum(steps.values()),
                }
            )
            if progress:
                print(
                    f"{i + 1}/{len(asks)} {'abstained' if answer.abstained else 'answered'} in {total:.2f} s",
                    file=sys.stderr,  # stdout is the headline's JSON
                )
        rss_after = rss_mib()

    warm = [r for r in rows if not r["cold"]]
    answered = [r for r in warm if not r["abstained"]]
    abstained = [r for r in warm if r["abstained"]]
    pieces, llm_s = sum(r["pieces"] for r in answered), sum(r["llm"] for r in answered)
    figures = {
        "answered": _group(answered),
        "abstained": _group(abstained),
        "cold_first_answer_s": round(rows[0]["total"], 3),
        "cold_first_answer_llm_s": round(rows[0]["llm"], 3),
        "rss_before_mib": rss_before,
        "rss_after_mib": rss_after,
    }
    reference = {
        "what": "the LLM's own generation, inside the same answers: its time and pieces (about tokens) per second",
        "llm_ms_p50": latency_ms([r["llm"] for r in answered])["p50"],
        "llm_pieces_per_s": per_second(pieces, llm_s, digits=1),
        "pieces_per_answer_mean": round(pieces / len(answered), 1) if answered else None,
    }
    config = {
        **asdict(size),
        "twins_built": len(twins),
        "events": report.stored,
        "build_s": round(build_s, 1),
        "questions_on_topic": list(QUESTIONS),
        "questions_off_topic": list(OFF_TOPIC),
        "settings": settings_config(settings),
    }
    notes = [
        "*_ms: latency figures in milliseconds (n, p50, p95, max, mean); ttft: from the call to the first piece "
        "of text; llm_first: the LLM's own time to its first piece (prompt evaluation)",
        "outside_llm_share: (sum of totals - sum of LLM time) / sum of totals over the answered questions",
        "parts_ms_mean: the mean time of each step per answer; other = total - LLM - the steps (citations, the "
        "service's own code, the generator hand-offs)",
        f"the first answer (cold: loads the LLM) is excluded from the groups; {len(abstained)} warm asks were "
        "abstained from (no evidence, no LLM call)",
    ]
    return Measured(figures, reference, config, notes)


def _group(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"n": 0}
    total = sum(r["total"] for r in rows)
    llm = sum(r["llm"] for r in rows)
    steps = (*_Parts.names, "other")
    return {
        "n": len(rows),
        "total_ms": latency_ms([r["total"] for r in rows]),
        "ttft_ms": latency_ms([r["ttft"] for r in rows]),
        "llm_ms": latency_ms([r["llm"] for r in rows]),
        "llm_first_ms": latency_ms([r["llm_first"] for r in rows if r["llm_first"] is not None]),
        "outside_llm_ms": latency_ms([r["total"] - r["llm"] for r in rows]),
        "outside_llm_share": share(total - llm, total),
        "parts_ms_mean": {s: round(sum(r[s] for r in rows) / len(rows) * 1000, 2) for s in steps},
    }
