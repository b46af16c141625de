"""A sentence-transformers model run by ONNX Runtime: the same vectors as PyTorch, three times faster per query.

The model is exported from its sentence-transformers folder once (transformer, mean pooling and normalization
in one graph, with PyTorch's exporter) and kept in a cache folder keyed by the model's files. Each export is
checked against the PyTorch model on probe sentences and refused when any vector differs by more than
:data:`TOLERANCE`, so a model whose pipeline is not transformer → mean pooling → normalize never gets a graph
that would embed differently. After that, encoding needs neither torch nor sentence-transformers: the Rust
tokenizer (``tokenizers``) and ``onnxruntime``, which releases the GIL while it runs.

Measured on the 2-core machine (benchmarks/RESULTS.md): a one-sentence query in 3.1 ms against 10 ms with
PyTorch, batches of 64 short texts 1.2x faster, largest difference in any vector component 1e-7.

Each run of the graph uses one thread, and a call of several batches runs them on ``workers`` threads at once
(one per usable CPU by default), rather than spreading each batch over ONNX Runtime's own thread pool. Alone,
both encode at the same speed; beside other work (Chroma writing an import's batch on its own threads), a pool
whose threads wait for one another at every operator loses more than the CPU taken from it, and independent
batches do not (benchmarks/RESULTS.md, sixth pass).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from twinchat.adapters import MissingDependency, require
from twinchat.adapters.embedders import BUNDLED_MODELS, SentenceTransformerEmbedder, bundled_model_path
from twinchat.ports import Embedder, settled

EXPORT_FORMAT = 1  # bump when the exported graph changes: older exports are then made again
TOLERANCE = 1e-4  # the largest difference allowed between the exported graph's vectors and PyTorch's
PROBES = (
    "Bought 6 x WHITE HANGING HEART T-LIGHT HOLDER at 2.55 on 2010-12-01.",
    "Have you ever bought a cake stand?",
    "The delivery was late and the box was damaged; support replaced it within a week.",
    "ok",
    "A review long enough to be cut at the model's window. " * 60,
)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

T = TypeVar("T")


class ExportError(RuntimeError):
    """The model cannot be run by ONNX Runtime with the same vectors as PyTorch."""


class OnnxEmbedder(Embedder):
    """Normalized mean-pooled sentence embeddings from an ONNX export of a sentence-transformers model.

    Example::

        embedder = OnnxEmbedder("all-MiniLM-L6-v2", cache=Path("~/.cache/twinchat").expanduser())
        embedder.embed_batch(["Have you ever bought a cake stand?"])  # exports once, then loads the export
    """

    def __init__(
        self, model: str = "all-MiniLM-L6-v2", *, cache: Path, batch_size: int = 64, workers: int = 0
    ) -> None:
        self.name = model
        self.path = bundled_model_path(model) if model in BUNDLED_MODELS else Path(model)
        self.cache = cache
        self.batch_size = batch_size
        self.workers = workers or usable_cpus()  # batches of one call encoded at once, a thread each
        self._loaded: tuple[Any, Any] | None = None  # session, tokenizer
        self._fallback: SentenceTransformerEmbedder | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any] | None:
        """The session and tokenizer; None once the model has fallen back to PyTorch."""
        with self._lock:
            if self._loaded is None and self._fallback is None:
                try:
                    graph, meta = export(self.path, self.cache)
                except (ExportError, MissingDependency) as exc:
                    warnings.warn(f"embedding with PyTorch instead of ONNX Runtime: {exc}", stacklevel=3)
                    self._fallback = SentenceTransformerEmbedder(self.name, batch_size=self.batch_size)
                    return None
                ort = require("onnxruntime", "onnxruntime")
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1  # a run on its caller's thread; calls run side by side
                options.inter_op_num_threads = 1
                session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
                self._loaded = (session, _tokenizer(self.path, meta["max_seq_length"]))
                if self.workers > 1:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="twinchat-onnx")
        return self._loaded

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        return self._start(texts, inline=True).result()

    def start_batch(self, texts: Sequence[str]) -> Future[list[list[float]]]:
        """Tokenize the texts now and queue their batches on the workers, behind those of the calls before."""
        return self._start(texts, inline=False)

    def _start(self, texts: Sequence[str], *, inline: bool) -> Future[list[list[float]]]:
        """The texts' vectors; ``inline``: a single batch runs on the caller's thread (a query does not queue
        behind an import's batches)."""
        loaded = self._load() if texts else None
        if loaded is None:
            return settled(self._fallback.embed_batch if self._fallback else list, texts)
        np = require("numpy", "numpy")
        session, tokenizer = loaded
        encodings = tokenizer.encode_batch(list(texts))
        # Longest first, in batches: each batch is padded to its own longest text, as sentence-transformers does.
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i].ids))

        def run(start: int) -> Any:
            return session.run(
                None, _feed(np, [encodings[i] for i in order[start : start + self.batch_size]])
            )[0]

        def in_order(parts: list[Any]) -> list[list[float]]:
            embedded = np.concatenate(parts)
            vectors = np.empty_like(embedded)
            vectors[order] = embedded  # back in the order asked
            return vectors.tolist()  # type: ignore[no-any-return]

        starts = range(0, len(order), self.batch_size)
        if self._pool is None or (inline and len(starts) == 1):
            return settled(lambda: in_order([run(s) for s in starts]))
        # ONNX Runtime releases the GIL while it runs: the batches use every worker, in the order queued.
        return gathered([self._pool.submit(run, s) for s in starts], in_order)


def gathered(parts: Sequence[Future[Any]], combine: Callable[[list[Any]], T]) -> Future[T]:
    """A future of ``combine`` over the parts' results, computed by the thread that finishes the last part; the
    first part to fail fails it. Cancelling it cancels the parts not started yet.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with ThreadPoolExecutor(2) as pool:
    ...     gathered([pool.submit(pow, 2, n) for n in range(4)], sum).result()
    15
    """
    whole: Future[T] = Future()
    left = [len(parts)]
    lock = threading.Lock()

    def settle(part: Future[Any]) -> None:
        if whole.done():
            return
        try:
            if part.cancelled():
                whole.cancel()  # which cancels the other parts
                return
            error = part.exception()
            if error is None:
                with lock:
                    left[0] -= 1
                    if left[0]:
                        return
                try:
                    value = combine([p.result() for p in parts])
                except Exception as exc:
                    error = exc
                else:
                    whole.set_result(value)
                    return
            whole.set_exception(error)
        except InvalidStateError:
            return  # settled meanwhile, by another part's failure or a cancel
        for other in parts:
            other.cancel()

    if not parts:
        whole.set_result(combine([]))
        return whole
    whole.add_done_callback(lambda w: [p.cancel() for p in parts] if w.cancelled() else None)
    for part in parts:
        part.add_done_callback(settle)
    return whole


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _tokenizer(model: Path, window: int) -> Any:
    """The model's own Rust tokenizer, cutting at the model's window and padding nothing (batches pad)."""
    tokenizer = require("tokenizers", "tokenizers").Tokenizer.from_file(str(model / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(window)
    return tokenizer


def _feed(np: Any, encodings: Sequence[Any]) -> dict[str, Any]:
    width = max(len(e.ids) for e in encodings)
    feed = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in INPUTS}
    for row, encoding in enumerate(encodings):
        n = len(encoding.ids)
        feed["input_ids"][row, :n] = encoding.ids
        feed["attention_mask"][row, :n] = encoding.attention_mask
        feed["token_type_ids"][row, :n] = encoding.type_ids
    return feed


def export(model: Path, cache: Path) -> tuple[Path, dict[str, Any]]:
    """The checked ONNX export of the sentence-transformers model in folder ``model``, made on first use.

    Keyed by the model's files (names, sizes, modification times) and :data:`EXPORT_FORMAT`, written under a
    temporary name and renamed, so processes exporting at once never read a partial file.
    """
    folder = cache / "onnx"
    stem = f"{model.name}-{_fingerprint(model)}"
    graph, sidecar = folder / f"{stem}.onnx", folder / f"{stem}.json"
    if graph.exists() and sidecar.exists():
        return graph, json.loads(sidecar.read_text())
    if not (model / "tokenizer.json").exists():
        raise ExportError(f"{model}: no tokenizer.json, which the ONNX backend tokenizes with")
    folder.mkdir(parents=True, exist_ok=True)
    written = folder / f".{stem}.{uuid.uuid4().hex}.onnx"
    meta = _export_checked(model, written)
    part = sidecar.with_name(f".{sidecar.name}.{uuid.uuid4().hex}")
    part.write_text(json.dumps(meta, indent=2))
    os.replace(written, graph)
    os.replace(part, sidecar)
    return graph, meta


def _fingerprint(model: Path) -> str:
    files = sorted(p for p in model.rglob("*") if p.is_file())
    described = [(str(p.relative_to(model)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps([EXPORT_FORMAT, described]).encode()).hexdigest()[:16]


def _export_checked(model: Path, target: Path) -> dict[str, Any]:
    """Export the model to ``target`` and check it against PyTorch; what the export is, for its sidecar."""
    torch = require("torch", "torch")
    require("onnx", "onnx")  # torch.onnx writes the graph with it
    ort = require("onnxruntime", "onnxruntime")
    np = require("numpy", "numpy")
    st = require("sentence_transformers", "sentence-transformers")
    reference = st.SentenceTransformer(str(model), device="cpu", local_files_only=True)
    transformer = reference[0].auto_model.eval()

    class Pooled(torch.nn.Module):  # type: ignore[name-defined]
        """The transformer, mean pooling over the real tokens, and L2 normalization."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    sample = reference.tokenizer(list(PROBES[:2]), return_tensors="pt", padding=True)
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer's notes on Python control flow in the model: the check below is what decides.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Pooled(),
                tuple(sample[name] for name in INPUTS),
                str(target),
                input_names=list(INPUTS),
                output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        tokenizer = _tokenizer(model, reference.max_seq_length)
        got = session.run(None, _feed(np, tokenizer.encode_batch(list(PROBES))))[0]
        want = reference.encode(list(PROBES), normalize_embeddings=True, show_progress_bar=False)
        difference = float(np.abs(got - want).max())
        if got.shape != want.shape or difference > TOLERANCE:
            raise ExportError(
                f"{model}: the ONNX export's vectors differ from PyTorch's by {difference:.2g} "
                f"(more than {TOLERANCE}); the model's pipeline is not transformer, mean pooling, normalize"
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return {
        "model": str(model),
        "format": EXPORT_FORMAT,
        "max_seq_length": int(reference.max_seq_length),
        "dimensions": int(want.shape[1]),
        "checked_max_difference": difference,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }
