"""The population spec: segments with their demographics, preferences and behaviour, and the wording templates.

Loaded strictly from YAML (twinchat/domain/synth_default.yaml by default): a missing or mistyped field is an
error naming the file, the segment and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from twinchat.domain.prompts import read_yaml

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "domain" / "synth_default.yaml"
SURVEY_FIELDS = ("satisfaction", "delivery_day", "payment")


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    name: str
    share: float
    age_bands: tuple[str, ...]
    countries: tuple[str, ...]
    categories: tuple[str, ...]
    keywords: tuple[str, ...]
    orders_per_year: float
    basket_multiplier: float
    review_propensity: float
    complaint_propensity: float
    survey: dict[str, dict[str, float]]  # question field -> option -> weight


@dataclass(frozen=True)
class Spec:
    """A parsed spec.

    >>> spec = load_spec()
    >>> spec.segments[0].name, spec.base_date.isoformat()
    ('home-makers', '2011-12-09')
    """

    version: int
    base_date: date
    history_years: float
    segments: tuple[Segment, ...]
    templates: dict[str, Any]
    path: str


def load_spec(path: Path | None = None) -> Spec:
    path = path or DEFAULT_SPEC
    data = read_yaml(path, SpecError, what="synthetic population spec")
    where = str(path)
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping with version, base_date, segments, templates")
    version = _get(data, "version", int, where)
    try:
        base = date.fromisoformat(str(_get(data, "base_date", str, where)))
    except ValueError:
        raise SpecError(f"{where}: base_date: expected a date like 2011-12-09") from None
    years = float(_get(data, "history_years", (int, float), where))
    raw = _get(data, "segments", dict, where)
    if not raw:
        raise SpecError(f"{where}: segments: at least one segment is needed")
    segments = tuple(_segment(name, body, f"{where}: segment {name!r}") for name, body in raw.items())
    templates = _get(data, "templates", dict, where)
    for part in ("review", "opinion", "ticket", "survey"):
        if part not in templates:
            raise SpecError(f"{where}: templates: missing {part!r}")
    for name in SURVEY_FIELDS:
        if name not in templates["survey"]:
            raise SpecError(f"{where}: templates.survey: missing the question for {name!r}")
    return Spec(version, base, years, segments, templates, where)


def _segment(name: str, body: Any, where: str) -> Segment:
    if not isinstance(body, dict):
        raise SpecError(f"{where}: expected a mapping")

    def strings(key: str, *, allow_empty: bool = False) -> tuple[str, ...]:
        value = _get(body, key, list, where)
        if not all(isinstance(v, str) for v in value) or (not value and not allow_empty):
            raise SpecError(
                f"{where}: {key}: expected a {'' if allow_empty else 'non-empty '}list of strings"
            )
        return tuple(value)

    def probability(key: str) -> float:
        value = float(_get(body, key, (int, float), where))
        if not 0 <= value <= 1:
            raise SpecError(f"{where}: {key}: {value} is not a probability between 0 and 1")
        return value

    def positive(key: str) -> float:
        value = float(_get(body, key, (int, float), where))
        if value <= 0:
            raise SpecError(f"{where}: {key}: must be positive, got {value}")
        return value

    survey = {}
    for key in SURVEY_FIELDS:
        weights = _get(body, key, dict, where)
        if not weights or not all(isinstance(w, int | float) and w >= 0 for w in weights.values()):
            raise SpecError(f"{where}: {key}: expected option: weight pairs with weights >= 0")
        survey[key] = {str(k): float(w) for k, w in weights.items()}
    return Segment(
        name=name,
        share=positive("share"),
        age_bands=strings("age_bands"),
        countries=strings("countries"),
        categories=strings("categories", allow_empty=True),
        keywords=strings("keywords", allow_empty=True),
        orders_per_year=positive("orders_per_year"),
        basket_multiplier=positive("basket_multiplier"),
        review_propensity=probability("review_propensity"),
        complaint_propensity=probability("complaint_propensity"),
        survey=survey,
    )


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise SpecError(f"{where}: missing {key!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SpecError(f"{where}: {key}: expected {names}, got {type(value).__name__}")
    return value
