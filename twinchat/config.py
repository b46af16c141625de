"""Settings: one class, read from the environment (prefix ``TWINCHAT_``), built once and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything twinchat can be configured with.

    >>> Settings(home="/tmp/tc", llm="openai:gpt-4o-mini").store_spec
    'chroma:/tmp/tc/chroma'
    """

    model_config = SettingsConfigDict(env_prefix="TWINCHAT_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production"] = "development"
    home: Path = Field(default=Path(".twinchat"), description="Folder for all data twinchat stores.")

    # Backends, each chosen by one string (see twinchat.factory).
    llm: str = Field(default="local:smollm2", description="local:smollm2, local:/path.gguf or openai:<model>")
    embedder: str = Field(default="sentence-transformers:all-MiniLM-L6-v2")
    # What runs a sentence-transformers model: onnx exports it once into model_cache and runs it with ONNX
    # Runtime (same vectors, a query in a third of the time; twinchat.adapters.onnx_embedder), torch runs it
    # with PyTorch. onnx falls back to torch, with a warning, for a model it cannot export faithfully.
    embedder_backend: Literal["onnx", "torch"] = Field(
        default="onnx", description="onnx (exported once, then ONNX Runtime) or torch"
    )
    model_cache: Path = Field(
        default=Path("~/.cache/twinchat"), description="Folder for models prepared from the installed ones."
    )
    store: str = Field(default="", description="chroma:<path> or chroma+http://host:port; default under home")
    # How twins lie in the store (twinchat.adapters.chroma_store): one collection each, or spread over a fixed
    # number of shards. A store records its layout; `twinchat store migrate` converts one to the other.
    store_layout: Literal["auto", "per-twin", "sharded"] = Field(
        default="auto",
        description="auto: the layout the store records (a new store: sharded); per-twin: a collection per "
        "twin; sharded: store_shards collections",
    )
    store_shards: int = Field(default=16, ge=1, le=4096, description="Collections of the sharded layout.")
    store_memory_mib: int = Field(
        default=1024,
        ge=16,
        description="Memory an embedded store keeps for loaded collections (about 5 MiB each).",
    )
    database: str = Field(default="", description="SQLAlchemy URL for metadata; default SQLite under home")

    # The OpenAI-compatible endpoint; the SDK's own variable names are honoured too.
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("TWINCHAT_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TWINCHAT_OPENAI_API_KEY", "OPENAI_API_KEY")
    )

    # Answering.
    context_tokens: int = Field(default=2048, ge=512, description="The LLM's context window.")
    max_answer_tokens: int = Field(default=160, ge=16)
    top_k: int = Field(default=6, ge=1, le=50)
    min_relevance: float = Field(
        default=0.25, ge=-1.0, le=1.0, description="Cosine similarity below which evidence is not used."
    )
    # Ranking of evidence: score = weights · (dense, lexical, recency, importance), each in [0, 1].
    # twinchat.domain.retrieval.RetrievalPolicy documents each; these defaults are its defaults.
    weight_dense: float = Field(default=0.5, ge=0.0, description="Weight of embedding cosine similarity.")
    weight_lexical: float = Field(default=0.25, ge=0.0, description="Weight of BM25 over the twin's events.")
    weight_recency: float = Field(default=0.15, ge=0.0, description="Weight of recency (exponential decay).")
    weight_importance: float = Field(default=0.1, ge=0.0, description="Weight of the event's importance.")
    recency_half_life_days: float = Field(
        default=365.0, gt=0.0, description="Age, back from the twin's newest event, at which recency is 0.5."
    )
    retrieval_candidates: int = Field(default=30, ge=1, le=1000, description="Dense candidates per question.")
    min_lexical_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Share of a question's idf weight making an event relevant."
    )
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    seed: int = 0

    # Structured answers: the LLM part's weight in the pooled distribution (0 switches it off). Default from
    # evals/results/llm_weight.json: SmolLM2-135M's option scores add nothing on GSS items; a capable model should
    # be given a weight after the same measurement.
    survey_llm_weight: float = Field(default=0.0, ge=0.0, le=1.0)

    # The customer in control.
    default_consent: list[Literal["research", "product", "marketing"]] = Field(
        default=["research", "product"],
        description="purposes a new twin's customer consents to until they say otherwise (JSON list)",
    )
    correction_judge: Literal["auto", "llm", "none"] = Field(
        default="auto",
        description="auto: an LLM confirms contradictions for openai: models, never for the 135M",
    )

    synth_wording: Literal["auto", "llm", "templates"] = Field(
        default="auto",
        description="synthetic reviews and tickets: auto rewords with the LLM for openai: models only",
    )

    # Ingestion.
    # Events validated, checked for duplicates, encoded and written together. Each batch pays per write as well
    # as per event (an add per shard, a profile per twin, a registry transaction): an import's writes took 14 s
    # at 256 a batch, 9 s at 1,024 and 6 s at 4,096 (benchmarks/RESULTS.md, fourth pass). A process killed
    # mid-way redoes at most one batch.
    batch_size: int = Field(default=4096, ge=1, description="Events written to the store together.")

    # The HTTP API: a request carrying more items (events, questions, twins) is refused with 413.
    api_max_items: int = Field(default=1000, ge=1, description="Most items one API request may carry.")

    # The HTTP API: the largest request body it reads (413 beyond it).
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)

    # Where the shared public data sets live (never copied into the project).
    data_dir: Path = Field(default=PROJECT_ROOT.parent / "shared" / "data")
    prompts_dir: Path = Field(default=PROJECT_ROOT / "prompts")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production" and self.llm.startswith("openai:") and not self.openai_base_url:
            # In production an unset base URL silently means api.openai.com: make that a conscious choice.
            raise ValueError(
                "TWINCHAT_ENV=production with an openai: LLM needs OPENAI_BASE_URL set explicitly"
            )
        return self

    @property
    def store_spec(self) -> str:
        return self.store or f"chroma:{self.home / 'chroma'}"

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.home / 'twinchat.db'}"
