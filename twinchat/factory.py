"""Build backends from the one-string specs in Settings; everything heavy is created on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinchat.config import Settings
from twinchat.ports import ChatModel, Embedder, KeyStore, MemoryStore, TokenCounter, TwinRegistry

if TYPE_CHECKING:
    from twinchat.adapters.embedders import CachedEmbeddings


def make_embedder(settings: Settings) -> Embedder:
    kind, _, target = settings.embedder.partition(":")
    if kind == "sentence-transformers":
        if settings.embedder_backend == "onnx":
            from twinchat.adapters.onnx_embedder import OnnxEmbedder

            return OnnxEmbedder(target or "all-MiniLM-L6-v2", cache=settings.model_cache.expanduser())
        from twinchat.adapters.embedders import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(target or "all-MiniLM-L6-v2")
    if kind == "hash":  # for tests and smoke runs: no model, no meaning
        from twinchat.testing import HashEmbedder

        return HashEmbedder(int(target) if target else 256)
    raise ValueError(
        f"unknown TWINCHAT_EMBEDDER {settings.embedder!r}: use sentence-transformers:<model> or hash"
    )


def make_embeddings(settings: Settings, embedder: Embedder) -> CachedEmbeddings:
    """The embedder as LangChain's Embeddings, keeping the vectors of recent texts (a store reads them there)."""
    from twinchat.adapters.embedders import CachedEmbeddings

    return CachedEmbeddings(embedder, cache_size=4 * settings.batch_size)


def make_store(
    settings: Settings, embedder: Embedder, *, embeddings: CachedEmbeddings | None = None
) -> MemoryStore:
    """The configured store; ``embeddings``: the cache it reads vectors from (a new one by default)."""
    from twinchat.adapters.chroma_store import ChromaMemoryStore, ShardedChromaMemoryStore, resolve_layout

    client = make_store_client(settings)
    embeddings = embeddings or make_embeddings(settings, embedder)
    layout, shards = resolve_layout(client, settings.store_layout, settings.store_shards)
    if layout == "sharded":
        return ShardedChromaMemoryStore(client, embeddings, shards=shards)
    return ChromaMemoryStore(client, embeddings)


def make_store_client(settings: Settings):  # type: ignore[no-untyped-def]
    """The chromadb client of the configured store (for `twinchat store`, which needs no embedder)."""
    from twinchat.adapters.chroma_store import make_client

    spec = settings.store_spec
    if spec.startswith("chroma:"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return make_client(spec, memory_mib=settings.store_memory_mib, resident=resident_collections(settings))


def resident_collections(settings: Settings) -> int:
    """The collections an embedded store keeps loaded whatever its memory budget: the shards and the collection
    recording the layout (the store's own layout is not known before its client: under auto, room is kept for
    the configured number of shards)."""
    return settings.store_shards + 1 if settings.store_layout != "per-twin" else 0


def make_keys(settings: Settings) -> KeyStore:
    from twinchat.adapters.sql_keys import SqlKeyStore

    if settings.database_url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return SqlKeyStore(settings.database_url)


def make_registry(settings: Settings) -> TwinRegistry:
    from twinchat.adapters.sql_registry import SqlTwinRegistry

    if settings.database_url.startswith("sqlite:///"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return SqlTwinRegistry(settings.database_url)


def make_token_counter() -> TokenCounter:
    from twinchat.adapters.tokens import TiktokenCounter

    return TiktokenCounter()


def make_chat_model(settings: Settings) -> ChatModel:
    from twinchat.adapters.llm import make_chat_model as build

    return build(settings)
