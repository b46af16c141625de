"""Product categories from product descriptions, by a small keyword map kept as data (categories.yaml).

A keyword map rather than a model: it is deterministic, reviewable as a diff, and good enough to say that a
customer mostly buys candles and christmas decorations. The matching rules are in categories.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from twinchat.domain.prompts import read_yaml

DEFAULT_PATH = Path(__file__).with_name("categories.yaml")
_DEFAULT_RESOLVED = DEFAULT_PATH.resolve()
KNOWN_LIMIT = 100_000  # descriptions remembered by a map; a catalogue is rarely larger
_KEYS = {"version", "other", "fees", "categories"}


class CategoryMapError(ValueError):
    pass


@dataclass(frozen=True)
class CategoryMap:
    """Names the categories of a product description.

    >>> m = load_categories()
    >>> m.categorize("WHITE HANGING HEART T-LIGHT HOLDER")
    ['candles & lights', 'home decor']
    >>> m.categorize("PACK OF 72 RETROSPOT CUPCAKE CASES"), m.categorize("MYSTERY ITEM"), m.is_fee("Postage")
    (['baking'], ['other'], True)
    """

    version: int
    other: str
    fees: frozenset[str]
    patterns: tuple[tuple[str, re.Pattern[str]], ...]
    # Descriptions already categorized: every profile written names its products again.
    _known: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def categorize(self, product: str) -> list[str]:
        """Every category whose keywords the description contains, in map order; [other] when none."""
        found = self._known.get(product)
        if found is None:
            text = " ".join(product.upper().split())
            found = tuple(name for name, pattern in self.patterns if pattern.search(text)) or (self.other,)
            if len(self._known) >= KNOWN_LIMIT:
                self._known.clear()
            self._known[product] = found
        return list(found)

    def is_fee(self, product: str) -> bool:
        """Postage, bank charges and the like: paid for, but not something a customer chose to buy."""
        return " ".join(product.upper().split()) in self.fees


def load_categories(path: Path = DEFAULT_PATH) -> CategoryMap:
    """Load and check a category map file; an error names the file and the key at fault."""
    # The default is asked for once per profile written: resolving its path each time cost more than a lookup.
    return _load(_DEFAULT_RESOLVED if path is DEFAULT_PATH else path.resolve())


@cache
def _load(path: Path) -> CategoryMap:
    data = read_yaml(path, CategoryMapError, what="category map")
    if not isinstance(data, dict) or set(data) != _KEYS:
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CategoryMapError(f"{path}: expected exactly the keys {sorted(_KEYS)}, found {found}")
    if not isinstance(data["version"], int) or not _is_name(data["other"]):
        raise CategoryMapError(f"{path}: 'version' must be an integer and 'other' a non-empty string")
    fees = _words(path, "fees", data["fees"])
    categories = data["categories"]
    if not isinstance(categories, dict) or not categories:
        raise CategoryMapError(f"{path}: 'categories' must map category names to lists of keywords")
    patterns = []
    for name, keywords in categories.items():
        if not _is_name(name) or name == data["other"]:
            raise CategoryMapError(f"{path}: categories: {name!r} is not a usable category name")
        words = _words(path, f"categories.{name}", keywords)
        # Whole words only, with an optional plural: CUP is not CUPCAKE, CANDLE is CANDLES.
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        patterns.append((name, re.compile(rf"(?<![A-Z0-9])(?:{alternatives})(?:S|ES)?(?![A-Z0-9])")))
    return CategoryMap(data["version"], data["other"], frozenset(fees), tuple(patterns))


def _words(path: Path, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not value or not all(_is_name(w) for w in value):
        raise CategoryMapError(f"{path}: {key}: expected a non-empty list of strings, got {value!r}")
    return [" ".join(w.upper().split()) for w in value]


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())
