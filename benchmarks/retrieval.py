"""Retrieval: one twin's evidence search with 100, 1,000 and 10,000 twins stored, and what the twins cost.

The store grows in stages to each size. Every twin gets a synthetic history of 20 to 40 real Online Retail
purchase lines (the shipped per-line mapping's events, drawn from a pool, each under the twin's own event ids),
written through ``TwinService.ingest_records``: registry, profiles, consents and Chroma collections are exactly
what an import makes. Only the encoder is skipped: the pool's texts are embedded once with the real model and
an Embedder that looks their vectors up stands in for it while the twins are written, because encoding
300,000 texts would measure the encoder (which :mod:`benchmarks.ingest` measures) for an hour.

After each stage a fresh process opens the store, as a server would, loads the real embedder, and searches a
sample of twins with questions never asked before (so every query is encoded):

- ``first``: a twin's first search in the process, ``TwinService.retrieve`` (the call the ask path makes): it
  opens the twin's collection and builds its lexical index;
- ``repeat``: the same twin again with another question;
- ``dense``: ``MemoryStore.search`` alone on a twin already open (the vector search without the policy).

``encode_query`` is the embedder's share of each: the reference measured in the same run. Memory is the
searching process's resident size before and after opening the sampled twins; disk is the store's folder.
"""

from __future__ import annotations

import json
import random
import resource
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.core import (
    Measured,
    Stopwatch,
    bench_settings,
    disk_mib,
    in_child,
    latency_ms,
    online_retail_csv,
    peak_rss_mib,
    per_second,
    rss_mib,
    scratch,
    settings_config,
    timed_embedder,
)

NAME = "retrieval"
VERSION = 1
PANEL = "bench"
QUESTIONS = (
    "Have you ever bought {product}?",
    "How often do you order {product}?",
    "What did you pay for {product}?",
    "Would you buy {product} again?",
)
# While building, the writing process keeps fewer collections open (Chroma keeps RLIMIT_NOFILE / 5 of them):
# the writer's memory stays bounded; the searching process keeps the limit it was given.
BUILD_OPEN_FILES = 1024


@dataclass(frozen=True)
class Size:
    sizes: tuple[int, ...]
    events: tuple[int, int] = (20, 40)  # events per twin, uniform
    pool: int = 3000  # distinct purchase lines the histories are drawn from
    sample: int = 200  # twins searched at each size
    seed: int = 0


FULL = Size(sizes=(100, 1000, 10000))
QUICK = Size(sizes=(20, 60), pool=300, sample=10)


def run(size: Size, *, progress: bool = True) -> Measured:
    with scratch(NAME) as folder:
        settings = bench_settings(folder / "home")
        pool = folder / "pool.json"
        pooled = _pool(online_retail_csv(settings), pool, size)
        stages, figures = [], {}
        built = 0
        for n in size.sizes:
            build = in_child(_build, str(folder / "home"), str(pool), built, n, size.events, size.seed)
            stages.append({"from": built, "to": n, **build})
            built = n
            sample = random.Random(f"{size.seed}:{n}").sample(range(n), min(size.sample, n))
            probe = in_child(_probe, str(folder / "home"), str(pool), [_twin(i) for i in sample], size.seed)
            chroma, registry = disk_mib(folder / "home" / "chroma"), disk_mib(folder / "home" / "twinchat.db")
            figures[str(n)] = {
                **probe,
                "disk_mib": round(chroma + registry, 2),
                "disk_chroma_mib": chroma,
                "disk_registry_mib": registry,
                "disk_per_twin_kib": round((chroma + registry) * 1024 / n, 1),
                "events": build["events_total"],
            }
            if progress:
                repeat, first = figures[str(n)]["repeat"], figures[str(n)]["first"]
                print(f"{n} twins: first p95 {first['p95']} ms, repeat p95 {repeat['p95']} ms", flush=True)
    config = {**asdict(size), "settings": settings_config(settings), "pool": pooled}
    reference = {
        "encode_query": {
            str(n): figures[str(n)]["encode_query"] for n in size.sizes
        },  # the encoder alone, same queries, same run
        "what": "the embedder's time encoding each query, inside the searches measured",
    }
    notes = [
        "first: a twin's first retrieve in the process (opens its collection, builds its lexical index); repeat: "
        "another question to the same twin; dense: MemoryStore.search alone; latencies in ms",
        "rss_per_open_twin_mib: the searching process's growth per twin opened; Chroma keeps up to "
        "open_files_limit / 5 collections loaded, so a server that touches every twin grows to "
        "min(twins, that cap) times it",
        f"build: the twins are written with the pool's vectors looked up, not encoded; the writer's open files "
        f"are limited to {BUILD_OPEN_FILES} so it keeps at most {BUILD_OPEN_FILES // 5} collections loaded",
    ]
    return Measured({"sizes": figures, "build": stages}, reference, config, notes)


def _twin(i: int) -> str:
    return f"bench-{i:05d}"


def headline_paths(figures: dict[str, Any]) -> list[str]:
    """p95 of a twin's first and repeated search at each size; disk and memory per twin at the largest."""
    sizes = list(figures["sizes"])
    paths = [f"sizes.{n}.{kind}.p95" for n in sizes for kind in ("first", "repeat")]
    return paths + [f"sizes.{sizes[-1]}.disk_per_twin_kib", f"sizes.{sizes[-1]}.rss_per_open_twin_mib"]


# --- the pool and the twins ----------------------------------------------------------------------------------


def _pool(data: Path, path: Path, size: Size) -> dict[str, Any]:
    """Draw the pool of purchase lines, embed it once with the real model, keep both in ``path``."""
    from twinchat.domain.readers import RawRecord
    from twinchat.factory import make_embedder
    from twinchat.importers.online_retail import OnlineRetailImport

    records = [r.record for r in OnlineRetailImport(data, per="line").records() if isinstance(r, RawRecord)]
    distinct = list({r["text"]: r for r in records}.values())
    chosen = random.Random(f"{size.seed}:pool").sample(distinct, min(size.pool, len(distinct)))
    embedder = make_embedder(bench_settings(path.parent / "home"))
    started = time.perf_counter()
    vectors = embedder.embed_batch([r["text"] for r in chosen])
    seconds = time.perf_counter() - started
    keep = ("text", "timestamp", "source", "kind", "product", "quantity", "unit_price", "country")
    path.write_text(
        json.dumps({"records": [{k: r[k] for k in keep if k in r} for r in chosen], "vectors": vectors})
    )
    return {"lines": len(chosen), "embedded_s": round(seconds, 1)}


def _histories(
    pool: Sequence[dict[str, Any]], start: int, stop: int, events: tuple[int, int], seed: int
) -> Iterator:
    from twinchat.domain.readers import RawRecord

    for i in range(start, stop):
        rng = random.Random(f"{seed}:twin:{i}")
        twin = _twin(i)
        for j, line in enumerate(rng.sample(pool, rng.randint(*events))):
            yield RawRecord("bench", None, {**line, "customer_id": twin, "event_id": f"{twin}-{j:02d}"})


def _build(
    home: str, pool_path: str, start: int, stop: int, events: tuple[int, int], seed: int
) -> dict[str, Any]:
    """Write twins ``start`` to ``stop`` into the store at ``home``; how long it took and what it holds."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(BUILD_OPEN_FILES, hard), hard))
    from twinchat.ports import Embedder
    from twinchat.services import TwinService

    pool = json.loads(Path(pool_path).read_text())
    known = {r["text"]: v for r, v in zip(pool["records"], pool["vectors"], strict=True)}

    class PoolVectors(Embedder):
        name = "pool"

        def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
            return [known[t] for t in texts]

    service = TwinService.from_settings(bench_settings(Path(home)), embedder=PoolVectors())
    started = time.perf_counter()
    report = service.ingest_records(_histories(pool["records"], start, stop, events, seed), panel=PANEL)
    seconds = time.perf_counter() - started
    if report.rejected:
        raise RuntimeError(f"bench twins were rejected: {report.to_dict()['rejected'][:3]}")
    return {
        "events": report.stored,
        "events_total": sum(t.n_events for t in service.twins(panel=PANEL)),
        "seconds": round(seconds, 1),
        "twins_per_s": per_second(stop - start, seconds),
        "events_per_s": per_second(report.stored, seconds),
        "peak_rss_mib": peak_rss_mib(),
    }


# --- searching -----------------------------------------------------------------------------------------------


def _probe(home: str, pool_path: str, twins: list[str], seed: int) -> dict[str, Any]:
    """Search the sampled twins from a fresh process; latencies, the encoder's share, memory."""
    from twinchat.factory import make_embedder
    from twinchat.services import TwinService

    settings = bench_settings(Path(home))
    products = sorted(
        {r["product"] for r in json.loads(Path(pool_path).read_text())["records"] if "product" in r}
    )
    rng = random.Random(f"{seed}:questions")
    questions = iter(
        rng.sample([q.format(product=p.lower()) for q in QUESTIONS for p in products], 3 * len(twins))
    )

    embedder = make_embedder(settings)
    embedder.embed_batch(["warm-up: the model is loaded before any search"])
    encoder = Stopwatch()
    service = TwinService.from_settings(settings, embedder=timed_embedder(embedder, encoder))
    rss_ready = rss_mib()
    first: list[float] = []
    repeat: list[float] = []
    dense: list[float] = []
    encode: list[float] = []
    with_evidence = 0  # retrieves that found evidence (the policy may rightly find none: an abstention)
    for twin in twins:
        for kind, samples in (("first", first), ("repeat", repeat), ("dense", dense)):
            question = next(questions)
            before = encoder.seconds
            started = time.perf_counter()
            if kind == "dense":
                found = service.store.search(twin, question, k=settings.retrieval_candidates)
            else:
                found = service.retrieve(twin, question)  # type: ignore[assignment]
            samples.append(time.perf_counter() - started)
            encode.append(encoder.seconds - before)
            if kind == "dense" and not found:
                raise RuntimeError(f"twin {twin}'s collection returned nothing for {question!r}")
            with_evidence += kind != "dense" and bool(found)
    rss_after = rss_mib()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "twins_searched": len(twins),
        "retrieves_with_evidence": with_evidence,
        "first": latency_ms(first),
        "repeat": latency_ms(repeat),
        "dense": latency_ms(dense),
        "encode_query": latency_ms(encode),
        "rss_ready_mib": rss_ready,
        "rss_after_mib": rss_after,
        "rss_per_open_twin_mib": round((rss_after - rss_ready) / len(twins), 3),
        "open_files_limit": soft,
        "collections_kept_loaded": soft // 5,
    }
