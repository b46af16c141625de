"""Retrieval: one twin's evidence search with 100, 1,000 and 10,000 twins stored, and what the twins cost, in
each store layout (``per-twin``: a Chroma collection per twin; ``sharded``: twins spread over a fixed number of
collections, every read filtered on the twin), each built in a store folder of its own.

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
Figures are under ``layouts.<layout>.sizes.<n>``.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
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
VERSION = 2  # 2: figures per store layout
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
    layouts: tuple[str, ...] = ("per-twin", "sharded")  # each built and probed in a store of its own
    shards: int = 16  # collections of the sharded layout
    # The most twins a layout is grown to, where below the largest size: per-twin collections were built at
    # about 14 twins/s at first and 0.7 twins/s past 7,000 under load (10,000 did not finish in 40 minutes).
    limits: tuple[tuple[str, int], ...] = ()

    def sizes_of(self, layout: str) -> tuple[int, ...]:
        """The sizes this layout is grown through.

        >>> Size(sizes=(100, 1000, 10000), limits=(("per-twin", 3000),)).sizes_of("per-twin")
        (100, 1000, 3000)
        """
        cap = dict(self.limits).get(layout)
        if cap is None or cap >= max(self.sizes):
            return self.sizes
        return tuple(sorted({n for n in self.sizes if n < cap} | {cap}))


FULL = Size(sizes=(100, 1000, 10000), limits=(("per-twin", 3000),))
QUICK = Size(sizes=(20, 60), pool=300, sample=10)


def run(size: Size, *, progress: bool = True) -> Measured:
    with scratch(NAME) as folder:
        settings = bench_settings(folder / "home")
        pool = folder / "pool.json"
        pooled = _pool(online_retail_csv(settings), pool, size)
        layouts = {
            layout: _layout(folder / layout / "home", pool, size, layout, progress) for layout in size.layouts
        }
    config = {**asdict(size), "settings": settings_config(settings), "pool": pooled}
    reference = {
        "encode_query": {  # the encoder alone, same queries, same run
            layout: {n: figures["encode_query"] for n, figures in found["sizes"].items()}
            for layout, found in layouts.items()
        },
        "what": "the embedder's time encoding each query, inside the searches measured",
    }
    notes = [
        "first: a twin's first retrieve in the process (opens its collection, builds its lexical index); repeat: "
        "another question to the same twin; dense: MemoryStore.search alone; latencies in ms",
        f"layouts: per-twin keeps a collection per twin; sharded keeps {size.shards} collections and filters "
        "every read on twin_id; each layout is built and probed in its own store folder, same twins, same "
        "sample, same questions",
        "rss_per_open_twin_mib: the searching process's growth per twin opened; the embedded Chroma keeps up to "
        "collections_kept_loaded collections loaded (TWINCHAT_STORE_MEMORY_MIB / 5, at most open_files_limit / "
        "5), so with the per-twin layout a server that touches every twin grows to min(twins, that cap) times "
        "it; the sharded layout loads at most its shards",
        f"build: the twins are written with the pool's vectors looked up, not encoded; the writer's open files "
        f"are limited to {BUILD_OPEN_FILES} so it keeps at most {BUILD_OPEN_FILES // 5} collections loaded",
    ]
    return Measured({"layouts": layouts}, reference, config, notes)


def _layout(home: Path, pool: Path, size: Size, layout: str, progress: bool) -> dict[str, Any]:
    """Grow one layout's store through the sizes, probing it after each stage."""
    stages, figures = [], {}
    store: dict[str, Any] = {"layout": layout, "shards": size.shards}
    built = 0
    for n in size.sizes_of(layout):
        # in_child passes positions only: the layout goes in through partial (picklable, the functions being
        # module-level).
        build = in_child(partial(_build, **store), str(home), str(pool), built, n, size.events, size.seed)
        stages.append({"from": built, "to": n, **build})
        built = n
        sample = random.Random(f"{size.seed}:{n}").sample(range(n), min(size.sample, n))
        twins = [_twin(i) for i in sample]
        probe = in_child(partial(_probe, **store), str(home), str(pool), twins, size.seed)
        chroma, registry = disk_mib(home / "chroma"), disk_mib(home / "twinchat.db")
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
            # stderr: stdout is the headline's JSON
            print(
                f"{layout}, {n} twins: first p95 {first['p95']} ms, repeat p95 {repeat['p95']} ms",
                file=sys.stderr,
                flush=True,
            )
    return {"sizes": figures, "build": stages}


def _twin(i: int) -> str:
    return f"bench-{i:05d}"


def headline_paths(figures: dict[str, Any]) -> list[str]:
    """p95 of a twin's first and repeated search at each size, per layout; disk and memory per twin at the
    largest. (Results of version 1, one layout, have their sizes at the top.)"""
    if "layouts" not in figures:
        return _size_paths("", figures)
    return [
        p for layout, found in figures["layouts"].items() for p in _size_paths(f"layouts.{layout}.", found)
    ]


def _size_paths(prefix: str, figures: dict[str, Any]) -> list[str]:
    sizes = list(figures["sizes"])
    paths = [f"{prefix}sizes.{n}.{kind}.p95" for n in sizes for kind in ("first", "repeat")]
    last = f"{prefix}sizes.{sizes[-1]}"
    return paths + [f"{last}.disk_per_twin_kib", f"{last}.rss_per_open_twin_mib"]


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
    home: str,
    pool_path: str,
    start: int,
    stop: int,
    events: tuple[int, int],
    seed: int,
    *,
    layout: str = "per-twin",
    shards: int = 16,
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

    settings = bench_settings(Path(home), store_layout=layout, store_shards=shards)
    service = TwinService.from_settings(settings, embedder=PoolVectors())
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


def _probe(
    home: str, pool_path: str, twins: list[str], seed: int, *, layout: str = "per-twin", shards: int = 16
) -> dict[str, Any]:
    """Search the sampled twins from a fresh process; latencies, the encoder's share, memory."""
    from twinchat.adapters.chroma_store import cache_capacity
    from twinchat.factory import make_embedder, resident_collections
    from twinchat.services import TwinService

    settings = bench_settings(Path(home), store_layout=layout, store_shards=shards)
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
        "collections_kept_loaded": min(
            soft // 5, cache_capacity(settings.store_memory_mib, resident_collections(settings))
        ),
    }
