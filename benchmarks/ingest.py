"""Ingest: events per second end to end against the raw encoder's sentences per second on the same texts.

The end-to-end run is the CLI's import path: the Online Retail sample read by its shipped mapping (parse,
validate), then ``TwinService.ingest_records`` (duplicate check, embed, store in Chroma, registry, profiles,
consents, audit) into an empty TWINCHAT_HOME. The reference is the same texts through the same loaded embedder
in one call (ONNX Runtime by default, PyTorch with TWINCHAT_EMBEDDER_BACKEND=torch), once before and once after
the end-to-end run; their mean is the physical limit the pipeline is compared with. Loading the model is
outside both.

Both granularities of the shipped mappings are measured: one event per invoice line (short texts, about 2 % of
them repeated, as real purchase lines are: the pipeline's overhead shows most) and one per invoice (the
default of ``twinchat ingest``: long texts, the encoder dominates).

A small machine's speed drifts by more than the pipeline's overhead: the encoder alone spent 57 to 66
CPU-seconds on the same texts within one hour here, and back-to-back runs of the whole measurement gave ratios
from 0.79 to 0.87. So the default layout is measured ``repeats`` times, each in a process of its own and an
empty store, and its figures are those of the run with the median ratio, with every run's ratio beside them.
"""

from __future__ import annotations

import csv
import statistics
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.core import (
    Measured,
    Stopwatch,
    bench_settings,
    cpu_by_thread,
    cpu_seconds,
    in_child,
    online_retail_csv,
    peak_rss_mib,
    per_second,
    ratio,
    rss_mib,
    scratch,
    settings_config,
    share,
    thread_cpu,
    timed_embedder,
)

NAME = "ingest"
VERSION = 5  # 2: figures per store layout, ``<layout>.<granularity>``; 3: the default layout repeated;
# 4: each run also measures the import's bound, ``store_bound``; 5: and the CPU it spends, ``cpu``
HEADLINE = tuple(
    f"{layout}.{per}.{figure}"
    for layout in ("per-twin", "sharded")
    for per in ("line", "invoice")
    for figure in ("events_per_s", "ratio_to_encoder", "cpu.ceiling_ratio", "store_bound.ratio_to_encoder")
) + ("per-twin.line.peak_rss_mib", "sharded.line.peak_rss_mib")


@dataclass(frozen=True)
class Size:
    rows: int | None  # rows of the Online Retail sample read, in file order (None: all of them)
    granularities: tuple[str, ...] = ("line", "invoice")
    layouts: tuple[str, ...] = ("per-twin", "sharded")  # TWINCHAT_STORE_LAYOUT, each in a store of its own
    repeats: int = 1  # whole runs of the default layout, its figures the median run (module docstring)


# 2,410 customers, 6,165 invoices: minutes, not the hour all 40,000 take. The per-twin layout (about 5 times
# slower, and not the default) is measured once.
FULL = Size(rows=10_000, repeats=3)
QUICK = Size(rows=300, repeats=2)  # two runs: the repeated path is exercised, quickly
REPEATED = "sharded"  # the default layout (TWINCHAT_STORE_LAYOUT)


def run(size: Size, *, progress: bool = True) -> Measured:
    with scratch(NAME) as folder:
        settings = bench_settings(folder / "home")
        data = _first_rows(online_retail_csv(settings), size.rows, folder)
        figures: dict[str, Any] = {}
        reference: dict[str, Any] = {}
        for layout in size.layouts:
            figures[layout], reference[layout] = {}, {}
            for per in size.granularities:
                # A process each: Chroma keeps the collections it opened in memory, and the peak is per import.
                runs = [
                    in_child(
                        _measure, str(data), per, layout, str(folder / f"home-{layout}-{per}-{i}"), progress
                    )
                    for i in range(size.repeats if layout == REPEATED else 1)
                ]
                reference[layout][per], figures[layout][per] = median_run(runs)
    config = {
        **asdict(size),
        "data": data.name
        if size.rows is None
        else f"first {size.rows} rows of {online_retail_csv(settings).name}",
        "settings": settings_config(settings),
    }
    notes = [
        "events_per_s: events stored per second, from reading the file to the last write; ratio_to_encoder: "
        "that over the raw encoder's sentences per second on the same texts (1.0: no overhead at all)",
        "breakdown_s: encoder = time inside the embedder, mostly on the import's encoding thread, overlapping "
        "the writes of the batch before (encoder_inside_writes: the part that did not); parse = reading and "
        "mapping the CSV; writes = storing the batches, of which chroma_write = Chroma's adds without the "
        "encoder, duplicate_check = reading stored ids, profiles = profile updates, registry_and_rest = twins, "
        "consents, audit; waiting_for_encoder = the rest of the wall time, the writer waiting for a batch's "
        "vectors (parse + writes + waiting_for_encoder = seconds)",
        "peak_rss_mib: the importing process's peak (the model, the raw encoder's runs and the import); "
        "each layout and granularity is measured in a process of its own, into an empty store",
        f"runs: the {REPEATED} layout is measured {size.repeats} time(s), each run the raw encoder, the import "
        "and the raw encoder again in a process of its own; its figures are the run with the median ratio, "
        "runs.ratio_to_encoder every run's ratio in order (the machine's speed drifts between runs)",
        "store_bound: the import's ceiling on this machine, measured after it in the same process: the raw "
        "encoder over the distinct texts while a thread writes the same events through the store alone, from "
        "the first moment, their vectors known (no parsing, duplicate check, registry, profiles or audit, and "
        "no batch waiting for its vectors); its ratio_to_encoder is the most any import into this store could "
        "reach here, and ratio_to_encoder's distance below it is the import's own overhead",
        "cpu: the CPU-seconds of every thread of the process during the import (seconds), and during the raw "
        "encoder's runs (encoder_alone_s, their mean; encoder_alone_cores: that over their wall time, how much of "
        "the machine the encoder fills alone); ceiling_ratio: the ratio_to_encoder the import would reach if the "
        "CPU it spent were spread over all the machine's cores without a moment idle (events over seconds / "
        "cores), so ratio_to_encoder's distance below it is lost to the schedule (one core idle at the start, "
        "waits, the last write) and ceiling_ratio's distance below 1 to work beside the encoder; by_thread: "
        "seconds per thread (twinchat-onnx: the encoder's batches; tokio-rt-worker and sqlx-sqlite-wor: "
        "Chroma's own; MainThread: twinchat's writer and Chroma's calls on it; ended threads: those gone before "
        "the end, chiefly the import's encoding thread: the tokenizer and the look-ahead's reads; Linux only)",
        "layouts: per-twin writes a Chroma collection per twin (a batch of events touches about as many "
        "collections as twins); sharded writes one add per shard and batch (TWINCHAT_STORE_LAYOUT=sharded)",
    ]
    return Measured(figures, reference, config, notes)


def median_run(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Of several (reference, figures) runs, the one whose ratio to the encoder is the median (the lower middle
    of an even count), its figures carrying every run's ratio, events/s and encoder sentences/s, in order.

    >>> runs = [({"sentences_per_s": s}, {"ratio_to_encoder": r, "events_per_s": r * s,
    ...                                   "cpu": {"ceiling_ratio": c}, "store_bound": {"ratio_to_encoder": b}})
    ...         for r, s, b, c in ((0.8, 250.0, 0.92, 0.85), (0.9, 240.0, 0.93, 0.95), (0.7, 260.0, 0.91, 0.75))]
    >>> reference, figures = median_run(runs)
    >>> reference["sentences_per_s"], figures["ratio_to_encoder"], figures["runs"]["ratio_to_encoder"]
    (250.0, 0.8, [0.8, 0.9, 0.7])
    >>> figures["runs"]["store_bound_ratio"], figures["runs"]["cpu_ceiling_ratio"]
    ([0.92, 0.93, 0.91], [0.85, 0.95, 0.75])
    """
    if len(runs) == 1:
        return runs[0]
    ratios = [figures["ratio_to_encoder"] for _, figures in runs]
    reference, figures = runs[ratios.index(statistics.median_low(ratios))]
    figures = {
        **figures,
        "runs": {
            "ratio_to_encoder": ratios,
            "events_per_s": [f["events_per_s"] for _, f in runs],
            "sentences_per_s": [r["sentences_per_s"] for r, _ in runs],
            "cpu_ceiling_ratio": [f["cpu"]["ceiling_ratio"] for _, f in runs],
            "store_bound_ratio": [f["store_bound"]["ratio_to_encoder"] for _, f in runs],
        },
    }
    return reference, figures


def _measure(
    data: str, per: str, layout: str, home: str, progress: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The raw encoder, the import, the raw encoder again: the reference and the end-to-end figures; then the
    import's bound on this machine (:func:`_store_bound`)."""
    from twinchat.adapters.onnx_embedder import usable_cpus
    from twinchat.domain.readers import RawRecord
    from twinchat.factory import make_embedder
    from twinchat.importers.online_retail import OnlineRetailImport

    settings = bench_settings(Path(home), store_layout=layout)
    embedder = make_embedder(settings)
    embedder.embed_batch(["warm-up: the model is loaded outside every timing"])
    records = OnlineRetailImport(Path(data), per=per).records()  # type: ignore[arg-type]
    texts = [r.record["text"] for r in records if isinstance(r, RawRecord)]
    before, cpu_before, _ = _encode(embedder, texts)  # its vectors freed before the import
    end_to_end = _pipeline(Path(data), per, embedder, settings, progress)
    after, cpu_after, vectors = _encode(embedder, texts)
    sentences_per_s = (before + after) / 2
    reference = {
        "what": "the embedder's encode over the same texts in one call (its backend, batch size, normalized)",
        "sentences": len(texts),
        "sentences_per_s": round(sentences_per_s, 1),
        "sentences_per_s_before": round(before, 1),
        "sentences_per_s_after": round(after, 1),
    }
    end_to_end["distinct_texts"] = len(set(texts))
    end_to_end["ratio_to_encoder"] = ratio(end_to_end["events_per_s"], sentences_per_s)
    end_to_end["cpu"] = _cpu_budget(
        end_to_end, (cpu_before + cpu_after) / 2, len(texts) / sentences_per_s, sentences_per_s, usable_cpus()
    )
    end_to_end["peak_rss_mib"] = peak_rss_mib()  # before the bound below, which holds every vector at once
    records = OnlineRetailImport(Path(data), per=per).records()  # type: ignore[arg-type]
    bound = _store_bound(
        embedder, records, dict(zip(texts, vectors, strict=True)), Path(home) / "bound", layout
    )
    bound["ratio_to_encoder"] = ratio(bound["events_per_s"], sentences_per_s)
    end_to_end["store_bound"] = bound
    return reference, end_to_end


def _encode(embedder: Any, texts: list[str]) -> tuple[float, float, list[list[float]]]:
    """The raw encoder's sentences per second on these texts, the CPU-seconds it spent, and their vectors: all of
    them in one call of the embedder the import uses (ONNX Runtime or PyTorch, as TWINCHAT_EMBEDDER_BACKEND
    says), its model loaded."""
    started, cpu_started = time.perf_counter(), cpu_seconds()
    vectors = embedder.embed_batch(texts)
    return len(texts) / (time.perf_counter() - started), cpu_seconds() - cpu_started, vectors


def _cpu_budget(
    end_to_end: dict[str, Any], encoder_cpu: float, encoder_wall: float, sentences_per_s: float, cores: int
) -> dict[str, Any]:
    """Where the import's ratio is lost: to work beside the encoder, or to its schedule.

    >>> budget = _cpu_budget({"events": 1000, "cpu_s": 25.0, "cpu_by_thread": {}}, 20.0, 10.0, 100.0, 2)
    >>> budget["beyond_encoder_s"], budget["encoder_alone_cores"], budget["ceiling_ratio"]
    (5.0, 2.0, 0.8)
    """
    spent, by_thread = end_to_end.pop("cpu_s"), end_to_end.pop("cpu_by_thread")
    return {
        "seconds": round(spent, 2),
        "encoder_alone_s": round(encoder_cpu, 2),
        "encoder_alone_cores": round(encoder_cpu / encoder_wall, 2),
        "beyond_encoder_s": round(spent - encoder_cpu, 2),
        "cores": cores,
        "ceiling_ratio": ratio(end_to_end["events"] * cores / spent, sentences_per_s),
        "by_thread": by_thread,
    }


def _store_bound(
    embedder: Any, records: Iterable[Any], vectors: dict[str, list[float]], home: Path, layout: str
) -> dict[str, Any]:
    """The best an import could do here whose only cost beside the encoder were the store's own writes.

    The raw encoder runs over the texts (one call, as the reference) while a thread writes the same events
    through the store alone, from the first moment, their vectors known already, in batches of
    TWINCHAT_BATCH_SIZE, into an empty store of the same layout. Nothing else of an import runs: no parsing,
    duplicate check, registry, profiles or audit, and no batch waits for its vectors. Both share the machine's
    cores, as in an import.
    """
    from twinchat.domain.events import Event
    from twinchat.domain.readers import RawRecord
    from twinchat.factory import make_store
    from twinchat.ports import Embedder

    class Known(Embedder):
        name = embedder.name

        def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
            return [vectors[t] for t in texts]

    settings = bench_settings(home, store_layout=layout)
    events: dict[tuple[str, str], Event] = {}  # an event once, as the import stores it
    for r in records:
        if isinstance(r, RawRecord):
            event = Event.from_record(r.record)
            events.setdefault((event.customer_id, event.event_id), event)
    ordered = list(events.values())
    batches: list[dict[str, list[Event]]] = []
    for start in range(0, len(ordered), settings.batch_size):
        batch: dict[str, list[Event]] = {}
        for event in ordered[start : start + settings.batch_size]:
            batch.setdefault(event.customer_id, []).append(event)
        batches.append(batch)
    store = make_store(settings, Known())  # its client started before the timing (an import's, inside it)
    writes = Stopwatch()

    def write() -> None:
        with writes:
            for batch in batches:
                store.add_many(batch)

    started = time.perf_counter()
    writer = threading.Thread(target=write, name="twinchat-bench-writes")
    writer.start()
    embedder.embed_batch(list(vectors))
    encoded = time.perf_counter() - started
    writer.join()
    seconds = time.perf_counter() - started
    return {
        "what": "the raw encoder over the distinct texts while a thread writes the same events through the "
        "store alone (vectors known, batches of TWINCHAT_BATCH_SIZE, an empty store); ratio_to_encoder: the import's "
        "ceiling on this machine",
        "events": len(ordered),
        "seconds": round(seconds, 2),
        "events_per_s": per_second(len(ordered), seconds, digits=1),
        "encoder_s": round(encoded, 2),
        "writes_s": round(writes.seconds, 2),
    }


def _pipeline(data: Path, per: str, embedder: Any, settings: Any, progress: bool) -> dict[str, Any]:
    """The import path, end to end, with the time inside each part measured where it is spent."""
    from twinchat.importers.online_retail import OnlineRetailImport
    from twinchat.services import TwinService

    encoder, parse, chroma, check, profiles, writes = (Stopwatch() for _ in range(6))
    rss_before = rss_mib()
    started, cpu_started, threads = time.perf_counter(), cpu_seconds(), thread_cpu()
    service = TwinService.from_settings(settings, embedder=timed_embedder(embedder, encoder))
    open_store, timed = service.open_store, []

    def timed_store() -> Any:
        """The store the import opens (while its first batch encodes), its writes and reads timed."""
        store = open_store()
        if not timed:
            store.add_many = chroma.wrap(store.add_many)  # type: ignore[method-assign]
            store.stored_texts_many = check.wrap(store.stored_texts_many)  # type: ignore[method-assign]
            timed.append(store)
        return store

    service.open_store = timed_store  # type: ignore[method-assign]
    service._update_profiles = profiles.wrap(service._update_profiles)  # type: ignore[method-assign]
    service._store_batch = writes.wrap(service._store_batch)  # type: ignore[method-assign]
    importer = OnlineRetailImport(data, per=per)  # type: ignore[arg-type]
    report = service.ingest_records(
        _timed(importer.records(), parse), progress=progress, label=f"{settings.store_layout}, per {per}"
    )
    seconds, cpu_s = time.perf_counter() - started, cpu_seconds() - cpu_started
    by_thread = cpu_by_thread(threads, thread_cpu(), cpu_s)
    if report.rejected or report.unreadable:
        raise RuntimeError(
            f"the Online Retail {per}s did not ingest cleanly: {report.to_dict()['rejected'][:3]}"
        )
    # The encoder runs mostly on the import's encoding thread, overlapping the writes of the batch before; what
    # it spends inside an add (a text not encoded ahead) is taken out of Chroma's write time.
    chroma_write = chroma.seconds - encoder.main_seconds
    return {
        "events": report.stored,
        "twins": len(report.new_twins),
        "seconds": round(seconds, 2),
        "cpu_s": cpu_s,  # this and the next turned into the figures "cpu" by _cpu_budget
        "cpu_by_thread": by_thread,
        "events_per_s": per_second(report.stored, seconds, digits=1),
        "sentences_encoded": encoder.items,  # fewer than events: a batch's repeated texts are encoded once
        "breakdown_s": {
            "encoder": round(encoder.seconds, 2),
            "encoder_inside_writes": round(encoder.main_seconds, 2),
            "parse": round(parse.seconds, 2),
            "writes": round(writes.seconds, 2),
            "chroma_write": round(chroma_write, 2),
            "duplicate_check": round(check.main_seconds, 2),
            "profiles": round(profiles.seconds, 2),
            "registry_and_rest": round(
                writes.seconds - chroma.seconds - check.main_seconds - profiles.seconds, 2
            ),
            "waiting_for_encoder": round(seconds - parse.seconds - writes.seconds, 2),
        },
        "encoder_share": share(encoder.seconds, seconds),
        "rss_growth_mib": round(rss_mib() - rss_before, 1),
    }


def _timed(records: Any, watch: Stopwatch) -> Any:
    """The records, with the time spent producing each (reading and mapping the file) on ``watch``."""
    iterator = iter(records)
    while True:
        with watch:
            item = next(iterator, None)
        if item is None:
            return
        yield item


def _first_rows(path: Path, rows: int | None, folder: Path) -> Path:
    """The file itself, or a copy of its header and first ``rows`` rows."""
    if rows is None:
        return path
    part = folder / path.name
    with path.open(encoding="utf-8-sig", newline="") as source, part.open("w", newline="") as target:
        reader, writer = csv.reader(source), csv.writer(target)
        for i, row in enumerate(reader):
            if i > rows:
                break
            writer.writerow(row)
    return part
