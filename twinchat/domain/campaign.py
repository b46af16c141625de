"""Strategy tests: an offer or a message in a few variants, and how a twin would respond to one of them.

Plain Python. A campaign file (YAML; see examples/campaign.yaml) names the campaign, its channel, the panel it
targets, two or more variants (text, price) and the segments to break the result down by. Each twin answers
one structured question per variant with a distribution over ``RESPONSES``; twinchat.domain.strategy turns
those distributions into response rates with intervals.

How a twin responds is pooled, like every structured answer (twinchat.domain.survey), from parts shown with
their weights: the choice model's parts where the panel has answered this question before, and always a
``behaviour`` part (``offer_prior``) read from the customer's own purchases: how much of what they buy the
offer is about, whether its price is within what they usually spend, and how likely they are to shop at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twinchat.domain.behaviour import PurchaseDay
from twinchat.domain.categories import CategoryMap, load_categories

BUY, CLICK, IGNORE, UNSUBSCRIBE = "would buy", "would click but not buy", "would ignore", "would unsubscribe"
RESPONSES = (BUY, CLICK, IGNORE, UNSUBSCRIBE)
# Segments a result can be broken down by: facts of the customer's profile, and a prediction band.
SEGMENTS = ("country", "currency", "favourite_category", "churn_risk", "orders")
# Channel -> (reach: how much of an interested customer's response survives the channel, unsubscribe base).
# Educated guesses, not calibrated: no campaign outcomes were available to fit them (say so in reports).
CHANNELS: dict[str, tuple[float, float]] = {
    "email": (1.0, 0.04),
    "sms": (0.9, 0.06),
    "push": (0.8, 0.05),
    "post": (0.7, 0.0),
    "social": (0.6, 0.01),
    "web": (1.0, 0.0),
}
MAX_VARIANTS = 8
OFFER_PRIOR_VERSION = 1
# The behaviour part's weight where the panel answered this campaign question before (the choice model's parts
# share the rest); elsewhere it has all the weight but the LLM's part (TWINCHAT_SURVEY_LLM_WEIGHT), if any.
BEHAVIOUR_WEIGHT = 0.5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WORD = re.compile(r"[a-z]{4,}")
_COMMON = {"this", "that", "with", "week", "free", "from", "your", "only", "days", "today", "offer", "just"}


class CampaignError(ValueError):
    """A campaign that cannot be run; the message names the source (a file), the field and what is accepted."""

    def __init__(self, source: str, field_name: str, reason: str) -> None:
        super().__init__(f"{source}: {field_name}: {reason}")
        self.source, self.field, self.reason = source, field_name, reason


@dataclass(frozen=True)
class Variant:
    key: str
    text: str
    price: float | None = None
    channel: str | None = None  # None: the campaign's

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text}
        if self.price is not None:
            data["price"] = self.price
        if self.channel is not None:
            data["channel"] = self.channel
        return data


@dataclass(frozen=True)
class Campaign:
    """An offer or message to test on twins.

    >>> c = Campaign.from_dict({"name": "spring", "channel": "email",
    ...     "variants": {"A": {"text": "20% off cake stands"}, "B": {"text": "Free delivery", "price": 10.6}}})
    >>> [v.key for v in c.variants], c.compare, c.responding
    (['A', 'B'], ('A', 'B'), ('would buy',))
    """

    name: str
    variants: tuple[Variant, ...]
    channel: str = "email"
    panel: str | None = None
    segments: tuple[str, ...] = ()
    compare: tuple[str, str] = ("A", "B")
    responding: tuple[str, ...] = (BUY,)  # the responses counted in the response rate
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def variant(self, key: str) -> Variant:
        return next(v for v in self.variants if v.key == key)

    def channel_of(self, variant: Variant) -> str:
        return variant.channel or self.channel

    def question(self, variant: Variant) -> tuple[str, str]:
        """(id, text) of the structured question a twin answers about a variant."""
        price = f" at {variant.price:.2f}" if variant.price is not None else ""
        text = (
            f'You receive this {self.channel_of(variant)} from the shop: "{variant.text}"{price}. '
            "What would you do?"
        )
        return f"campaign:{self.name}:{variant.key}", text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "panel": self.panel,
            "channel": self.channel,
            "variants": {v.key: v.to_dict() for v in self.variants},
            "segments": list(self.segments),
            "compare": list(self.compare),
            "response": list(self.responding),
        }

    @classmethod
    def from_file(cls, path: Path) -> Campaign:
        """Read a campaign YAML file; every error names the file and the field."""
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CampaignError(str(path), "file", "not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CampaignError(str(path), "file", f"cannot be read ({exc})") from None
        except yaml.YAMLError as exc:
            raise CampaignError(str(path), "file", f"invalid YAML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "campaign") -> Campaign:
        def fail(name: str, reason: str) -> CampaignError:
            return CampaignError(source, name, reason)

        if not isinstance(data, dict):
            raise fail("campaign", f"expected a mapping with name and variants, got {type(data).__name__}")
        known = {"name", "description", "panel", "channel", "variants", "segments", "compare", "response"}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise fail(unknown[0], f"unknown field; the fields are {', '.join(sorted(known))}")
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail(
                "name", "is required: letters, digits, '.', '_' or '-' (at most 64), e.g. spring-cakestand"
            )
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise fail("description", "must be text")
        panel = data.get("panel")
        if panel is not None and (not isinstance(panel, str) or not panel.strip()):
            raise fail("panel", "must be a panel's name (or left out and given with --panel)")
        channel = _channel(data.get("channel", "email"), "channel", fail)
        variants = _variants(data.get("variants"), fail)
        segments = data.get("segments") or []
        if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
            raise fail("segments", f"must be a list of names among {', '.join(SEGMENTS)}")
        for i, s in enumerate(segments):
            if s not in SEGMENTS:
                raise fail(f"segments.{i}", f"{s!r} is not one of {', '.join(SEGMENTS)}")
        keys = [v.key for v in variants]
        compare = data.get("compare", keys[:2])
        if (
            not isinstance(compare, list)
            or len(compare) != 2
            or not all(isinstance(k, str) and k in keys for k in compare)
            or compare[0] == compare[1]
        ):
            raise fail("compare", f"must name two different variants among {', '.join(keys)}, e.g. [A, B]")
        responding = data.get("response", [BUY])
        if isinstance(responding, str):
            responding = [responding]
        if (
            not isinstance(responding, list)
            or not responding
            or not all(r in RESPONSES for r in responding)
            or UNSUBSCRIBE in responding
            or IGNORE in responding
        ):
            raise fail("response", f"the responses counted: a list among {BUY!r}, {CLICK!r}")
        return cls(
            name=name,
            variants=tuple(variants),
            channel=channel,
            panel=panel.strip() if isinstance(panel, str) else None,
            segments=tuple(dict.fromkeys(segments)),
            compare=(compare[0], compare[1]),
            responding=tuple(r for r in RESPONSES if r in responding),
            description=description.strip(),
        )


def _channel(value: Any, name: str, fail: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in CHANNELS:
        raise fail(name, f"{value!r} is not one of {', '.join(CHANNELS)}")
    return value.strip().lower()


def _variants(value: Any, fail: Any) -> list[Variant]:
    if not isinstance(value, dict) or not 2 <= len(value) <= MAX_VARIANTS:
        raise fail(
            "variants", f"needs 2 to {MAX_VARIANTS} variants, e.g. {{A: {{text: ..., price: 8.5}}, B: ...}}"
        )
    variants = []
    for key, spec in value.items():
        where = f"variants.{key}"
        if not isinstance(key, str | int) or not _NAME.match(str(key)):
            raise fail(where, "a variant's name: letters, digits, '.', '_' or '-'")
        if isinstance(spec, str):
            spec = {"text": spec}
        if not isinstance(spec, dict):
            raise fail(where, "expected {text, price?, channel?}")
        unknown = sorted(str(k) for k in spec if k not in ("text", "price", "channel"))
        if unknown:
            raise fail(f"{where}.{unknown[0]}", "unknown field; a variant has text, price and channel")
        text = spec.get("text")
        if not isinstance(text, str) or not text.strip():
            raise fail(f"{where}.text", "is required: the offer or message as the customer would read it")
        price = spec.get("price")
        if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
            raise fail(f"{where}.price", f"must be a number of 0 or more (or left out), got {price!r}")
        channel = _channel(spec["channel"], f"{where}.channel", fail) if "channel" in spec else None
        variants.append(
            Variant(str(key), " ".join(text.split()), None if price is None else float(price), channel)
        )
    return variants


# --- how a customer's purchases say they would respond -------------------------------------------------


@dataclass(frozen=True)
class OfferFit:
    """What the behaviour part of a response stands on, each in 0..1 (see ``offer_prior``)."""

    interest: float  # share of the customer's purchase days naming what the offer is about
    price_fit: float  # 1 when the price is within the customer's average order value, less above it
    activity: float  # P(buys again in 90 days) from the lifetime model, else a guess from the history
    matched: tuple[str, ...]  # event ids of the purchase days the offer is about (its evidence)
    basis: str  # the same in words


def offer_fit(
    variant: Variant,
    days: Sequence[PurchaseDay],
    *,
    average_order: float | None,
    p_buy_again: float | None,
    categories: CategoryMap | None = None,
) -> OfferFit:
    """How well an offer fits a customer's purchases.

    Interest: the share of the customer's purchase days with a product in one of the offer's categories, or
    sharing a word (its first five letters: "stands" and "STAND") with the offer's text.
    """
    categories = categories or load_categories()
    wanted = {c for c in categories.categorize(variant.text) if c != categories.other}
    stems = {w[:5] for w in _WORD.findall(variant.text.lower()) if w not in _COMMON}
    matched: list[PurchaseDay] = []
    for day in days:
        products = [p for p in day.products if not categories.is_fee(p)]
        named = {c for p in products for c in categories.categorize(p)}
        words = {w[:5] for p in products for w in _WORD.findall(p.lower())}
        if named & wanted or words & stems:
            matched.append(day)
    interest = len(matched) / len(days) if days else 0.0
    if variant.price is None or not average_order or variant.price <= average_order:
        price_fit = 1.0
    else:
        price_fit = (average_order / variant.price) ** 0.5
    if p_buy_again is not None:
        activity, how = p_buy_again, f"P(buys again in 90 days) {p_buy_again:.2f}"
    else:
        activity = 0.5 if days else 0.1
        how = "no lifetime model fitted: activity taken as 0.5" if days else "no purchases: activity 0.1"
    basis = (
        f"the offer is about what I bought on {len(matched)} of my {len(days)} shopping days; "
        + (
            f"its price {variant.price:.2f} against my average order {average_order:.2f}; "
            if variant.price is not None and average_order
            else ""
        )
        + how
    )
    ids = tuple(e for d in matched[-5:] for e in d.event_ids)
    return OfferFit(interest, price_fit, activity, ids, basis)


def offer_prior(fit: OfferFit, channel: str) -> dict[str, float]:
    """The behaviour part of a twin's response: a distribution over RESPONSES (version OFFER_PRIOR_VERSION).

    A simple, uncalibrated propensity model, written down so that it can be argued with: buying needs the
    customer to shop at all (activity), to want what is offered (interest) and to afford it (price fit);
    clicking needs interest; unsubscribing comes from messages about things the customer does not buy.

    >>> offer_prior(OfferFit(1.0, 1.0, 1.0, (), ""), "email")[BUY]
    0.5
    """
    reach, unsubscribe = CHANNELS[channel]
    buy = 0.5 * reach * fit.activity * (0.1 + 0.9 * fit.interest) * fit.price_fit
    click = 0.35 * reach * (0.2 + 0.8 * fit.interest) * (1.0 - buy)
    unsub = unsubscribe * (1.0 - fit.interest)
    return {BUY: buy, CLICK: click, IGNORE: max(0.0, 1.0 - buy - click - unsub), UNSUBSCRIBE: unsub}


def pool(parts: Sequence[tuple[float, Mapping[str, float]]]) -> dict[str, float]:
    """A linear pool of distributions over RESPONSES, weights renormalised."""
    total = sum(w for w, _ in parts) or 1.0
    pooled = {r: sum(w * d.get(r, 0.0) for w, d in parts) / total for r in RESPONSES}
    norm = sum(pooled.values()) or 1.0
    return {r: v / norm for r, v in pooled.items()}


def reason(distribution: Mapping[str, float], fit: OfferFit) -> str:
    answer = max(RESPONSES, key=lambda r: distribution[r])
    return f"I {answer} ({distribution[answer]:.0%}): {fit.basis}."
