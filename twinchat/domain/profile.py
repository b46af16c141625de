"""A twin's profile: facts derived from its events, kept up to date incrementally, and a persona summary.

``update(profile, new_events)`` never needs earlier events. A profile holds sufficient statistics, not
events: counts and sums, one entry per order (so an invoice seen again in a later batch, as order lines are,
is still one order), product counts, and the few latest items of each kind. Ingesting N new events therefore
costs O(N) plus reading and writing the profile, whose size grows with distinct orders, products and
questions, not with events; and folding a history in any number of chunks gives the same profile as folding
it at once. Figures computed from that state (average order value, RFM, favourites, categories) are derived
when read, so a change of the category map applies to every twin without re-ingesting anything.

The service passes only events it has just stored: an event already stored is never folded in twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from twinchat.domain.categories import CategoryMap, load_categories
from twinchat.domain.events import Event
from twinchat.domain.models import Twin
from twinchat.domain.prompts import PromptTemplate

PROFILE_VERSION = 1
LATEST = 5  # latest reviews, support issues and survey statements a profile keeps
TOP = 5  # favourite products and categories shown
CANCEL_KINDS = ("cancellation", "refund", "return")
_CURRENCY = re.compile(r"\b(GBP|EUR|USD|CHF|SEK|NOK|DKK|PLN|JPY|AUD|CAD)\b")
_QA_START = re.compile(r"\s*Q\s*:")
_QA = re.compile(r"Q\s*:\s*(.+?)\s+A\s*:\s*(.+?)(?=\s+Q\s*:|\Z)", re.DOTALL)
_DATES = ("first_event", "last_event", "first_purchase", "last_purchase")


class ProfileVersionError(ValueError):
    """A stored profile written by another version of this module: rebuild it from the events."""


@dataclass
class Profile:
    """What a twin knows about its customer, folded from events one batch at a time.

    >>> e = Event.from_record({"customer_id": "c1", "text": "Order 1", "source": "purchase",
    ...     "timestamp": "2011-03-04", "invoice": "1", "total": 12.5, "products": ["RED MUG"]})
    >>> p = update(Profile(), [e])
    >>> p.facts()["purchases"]["orders"], p.facts()["purchases"]["spend"], p.facts()["purchases"]["first"]
    (1, 12.5, '2011-03-04')
    """

    version: int = PROFILE_VERSION
    n_events: int = 0
    first_event: datetime | None = None
    last_event: datetime | None = None
    by_source: dict[str, int] = field(default_factory=dict)
    # Purchases: one entry per order, keyed by its invoice (the event id when it has none), valued by its
    # amount (None when no amount is known). Cancellations are kept apart, never netted out of spend.
    orders: dict[str, float | None] = field(default_factory=dict)
    cancellations: dict[str, float | None] = field(default_factory=dict)
    first_purchase: datetime | None = None
    last_purchase: datetime | None = None
    products: dict[str, int] = field(default_factory=dict)  # description -> order lines naming it
    countries: dict[str, int] = field(default_factory=dict)  # country -> orders and cancellations
    currencies: dict[str, int] = field(default_factory=dict)
    # Stated preferences and opinions.
    survey_answers: int = 0
    answers: dict[str, dict[str, str]] = field(default_factory=dict)  # question -> latest {answer, date}
    statements: list[dict[str, str]] = field(default_factory=list)  # survey events without a question
    reviews: int = 0
    ratings: int = 0
    rating_sum: float = 0.0
    latest_reviews: list[dict[str, Any]] = field(default_factory=list)
    support_issues: int = 0
    latest_support: list[dict[str, str]] = field(default_factory=list)
    # The persona summary and what wrote it ("template:profile@v1"; an LLM summary would name its model).
    summary: str = ""
    summary_by: str = ""

    # --- persistence ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-ready document; ``Profile.from_dict(p.to_dict()) == p``."""
        data = vars(self.copy())  # a fresh copy's fields: nothing shared with this profile
        for name in _DATES:
            data[name] = data[name].isoformat() if data[name] else None
        return data

    def copy(self) -> Profile:
        """A copy sharing nothing mutable with this profile."""
        return Profile(**{f.name: _copied(getattr(self, f.name)) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise ProfileVersionError(f"profile version {found!r}, this twinchat reads {PROFILE_VERSION}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProfileVersionError(f"profile has unknown fields {unknown}")
        values = dict(data)
        for name in _DATES:
            values[name] = datetime.fromisoformat(values[name]) if values.get(name) else None
        return cls(**values)

    # --- derived facts -------------------------------------------------------------------------------

    def facts(self, categories: CategoryMap | None = None) -> dict[str, Any]:
        """The derived facts, for people and for prompts: plain JSON, deterministic, newest items first."""
        categories = categories or load_categories()
        priced = [a for a in self.orders.values() if a is not None]
        spend = round(sum(priced), 2)
        wanted = {p: n for p, n in self.products.items() if not categories.is_fee(p)}
        by_category: dict[str, int] = {}
        for product, n in wanted.items():
            for name in categories.categorize(product):
                by_category[name] = by_category.get(name, 0) + n
        # Recency is counted back from the twin's newest event, not from today: the histories are often
        # years old, and a profile must not change while no event arrives (nor a test with the calendar).
        recency = (
            (self.last_event.date() - self.last_purchase.date()).days
            if self.last_event and self.last_purchase
            else None
        )
        return {
            "events": {
                "count": self.n_events,
                "first": _day(self.first_event) or None,
                "last": _day(self.last_event) or None,
                "by_source": _ranked(self.by_source),
            },
            "purchases": {
                "orders": len(self.orders),
                "first": _day(self.first_purchase) or None,
                "last": _day(self.last_purchase) or None,
                "spend": spend,
                "currency": self.currency,
                "average_order_value": round(spend / len(priced), 2) if priced else None,
                "cancellations": len(self.cancellations),
                "cancelled_value": round(sum(a for a in self.cancellations.values() if a is not None), 2),
                "rfm": {
                    "reference_date": _day(self.last_event) or None,
                    "recency_days": recency,
                    "frequency": len(self.orders),
                    "monetary": spend,
                },
                "favourite_products": [{"product": p, "count": n} for p, n in _top(wanted)],
                "favourite_categories": [{"category": c, "count": n} for c, n in _top(by_category)],
                "countries": _ranked(self.countries),
            },
            "surveys": {
                "answers": self.survey_answers,
                "latest": [{"question": q, **a} for q, a in _newest_answers(self.answers)][:LATEST],
                "statements": list(reversed(self.statements)),
            },
            "reviews": {
                "count": self.reviews,
                "rated": self.ratings,
                "average_rating": round(self.rating_sum / self.ratings, 2) if self.ratings else None,
                "latest": list(reversed(self.latest_reviews)),
            },
            "support": {"issues": self.support_issues, "latest": list(reversed(self.latest_support))},
        }

    @property
    def currency(self) -> str | None:
        """The one currency the orders name, or None when they name none or several."""
        return next(iter(self.currencies)) if len(self.currencies) == 1 else None


def update(profile: Profile, new_events: Iterable[Event]) -> Profile:
    """A new profile with the new events folded in; the given one is left as it is.

    The summary is cleared when anything changed: it described the old facts (see ``summarize``).
    """
    result = profile.copy()
    before = result.n_events
    for event in new_events:
        _fold(result, event)
    if result.n_events != before:
        result.summary, result.summary_by = "", ""
    return result


def _copied(value: Any) -> Any:
    """A copy of a profile's value: its containers (dicts, lists) copied all the way down, the rest (numbers,
    strings, datetimes: immutable) shared. A profile holds nothing else, and ``copy.deepcopy`` spent more than
    the folding itself in an import."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


def summarize(profile: Profile, template: PromptTemplate, *, categories: CategoryMap | None = None) -> str:
    """The persona summary: a few deterministic sentences, rendered from the facts by a `summary` template."""
    categories = categories or load_categories()
    facts = profile.facts(categories)
    buys = facts["purchases"]
    since = profile.first_purchase or profile.first_event
    named = [c["category"] for c in buys["favourite_categories"] if c["category"] != categories.other]
    spend = f"{buys['spend']:,.2f}" + (f" {buys['currency']}" if buys["currency"] else "")
    text = template.render(
        "summary",
        since=since.strftime("%Y-%m") if since else None,
        countries=", ".join(_clip(c, 40) for c in list(buys["countries"])[:2]) or None,
        orders=buys["orders"],
        spend=spend if any(a is not None for a in profile.orders.values()) else None,
        last_purchase=buys["last"],
        categories=named[:3],
        top_product=_clip(buys["favourite_products"][0]["product"], 60) if buys["favourite_products"] else "",
        cancellations=buys["cancellations"],
        support_issues=profile.support_issues,
        reviews=profile.reviews,
        average_rating=facts["reviews"]["average_rating"],
        survey_answers=profile.survey_answers,
    )
    return " ".join(text.split())


def summary_author(template: PromptTemplate) -> str:
    return f"template:{template.name}@v{template.version}"


def show_document(
    twin: Twin, profile: Profile, identifiers: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """What `twinchat show --json` prints and the API returns: stable top-level keys, more may be added.

    ``identifiers``: under which the customer's records arrived (``{"kind", "value"}``), listed in ``twin``.
    """
    return {
        "twin": {**twin.to_dict(), "identifiers": identifiers or []},
        "profile": profile.facts(),
        "summary": profile.summary,
    }


# --- folding one event -----------------------------------------------------------------------------------


def _fold(p: Profile, event: Event) -> None:
    when = event.timestamp.astimezone(UTC) if event.timestamp else None
    p.n_events += 1
    _bump(p.by_source, event.source)
    p.first_event, p.last_event = _earliest(p.first_event, when), _latest(p.last_event, when)
    if event.source == "purchase":
        _fold_purchase(p, event, when)
    pairs = _survey_pairs(event)
    if pairs or event.source == "survey":
        _fold_survey(p, event, pairs, _day(when))
    if event.source == "review":
        rating = _number(event.attributes.get("rating"))
        p.reviews += 1
        if rating is not None:
            p.ratings += 1
            p.rating_sum = round(p.rating_sum + rating, 4)
        item = {"date": _day(when), "rating": rating, "text": _clip(event.text, 200)}
        p.latest_reviews = _keep_latest([*p.latest_reviews, item], "text")
    if event.source == "support":
        subject = event.attributes.get("subject")
        text = event.text if _blank(subject) else str(subject)
        item = {"date": _day(when), "subject": _clip(text, 100)}
        p.support_issues += 1
        p.latest_support = _keep_latest([*p.latest_support, item], "subject")


def _fold_purchase(p: Profile, event: Event, when: datetime | None) -> None:
    attrs = event.attributes
    quantity = _number(attrs.get("quantity"))
    cancelled = (event.kind or "").lower() in CANCEL_KINDS or (quantity is not None and quantity < 0)
    key = str(attrs["invoice"]) if not _blank(attrs.get("invoice")) else event.event_id
    book = p.cancellations if cancelled else p.orders
    is_new = key not in book
    book[key] = _plus(book.get(key), _amount(attrs))
    if is_new:
        # Per order, not per event: an invoice stored line by line still counts once.
        if not _blank(attrs.get("country")):
            _bump(p.countries, " ".join(str(attrs["country"]).split()))
        currency = attrs.get("currency")
        found = str(currency).strip().upper() if not _blank(currency) else _currency_in(event.text)
        if found:
            _bump(p.currencies, found)
    if cancelled:
        return
    p.first_purchase, p.last_purchase = _earliest(p.first_purchase, when), _latest(p.last_purchase, when)
    for product in _products(attrs):
        _bump(p.products, product)


def _fold_survey(p: Profile, event: Event, pairs: list[tuple[str, str]], day: str) -> None:
    if not pairs:
        p.survey_answers += 1
        p.statements = _keep_latest([*p.statements, {"date": day, "text": _clip(event.text, 200)}], "text")
        return
    p.survey_answers += len(pairs)
    for question, answer in pairs:
        known = p.answers.get(question)
        # The latest answer wins whatever order events arrive in; on the same day, the larger text.
        if known is None or (day, answer) > (known["date"], known["answer"]):
            p.answers[question] = {"answer": answer, "date": day}


def _survey_pairs(event: Event) -> list[tuple[str, str]]:
    """(question, answer) pairs: from `question`/`answer` attributes, or from text like `Q: ... A: ...`."""
    question, answer = event.attributes.get("question"), event.attributes.get("answer")
    if not _blank(question) and not _blank(answer):
        return [(_clip(str(question), 300), _clip(str(answer), 300))]
    if not _QA_START.match(event.text):
        return []
    return [(_clip(q, 300), _clip(a, 300)) for q, a in _QA.findall(event.text)]


def _amount(attrs: dict[str, Any]) -> float | None:
    """An order's amount: its `total`, else `quantity` x `unit_price`, in cents; None when unknown."""
    total = _number(attrs.get("total"))
    if total is not None:
        return round(abs(total), 2)
    quantity, price = _number(attrs.get("quantity")), _number(attrs.get("unit_price"))
    return round(abs(quantity * price), 2) if quantity is not None and price is not None else None


def _products(attrs: dict[str, Any]) -> list[str]:
    value = attrs.get("products", attrs.get("product"))
    items = value if isinstance(value, list) else [value]
    return [" ".join(str(x).split()) for x in items if not _blank(x) and not isinstance(x, dict | list)]


def _currency_in(text: str) -> str | None:
    found = set(_CURRENCY.findall(text))
    return found.pop() if len(found) == 1 else None


# --- small helpers ---------------------------------------------------------------------------------------


def _plus(a: float | None, b: float | None) -> float | None:
    # Amounts are kept in cents (rounded after every sum): chunking never changes a total in the last digit.
    if a is None or b is None:
        return a if b is None else b
    return round(a + b, 2)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(x for x in (a, b) if x is not None) if a or b else None


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(x for x in (a, b) if x is not None) if a or b else None


def _keep_latest(items: list[dict[str, Any]], text_key: str) -> list[dict[str, Any]]:
    # Oldest first, undated before dated, ties by text: the same items in any order give the same list.
    return sorted(items, key=lambda i: (i["date"], str(i[text_key])))[-LATEST:]


def _day(when: datetime | None) -> str:
    return when.date().isoformat() if when else ""


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _ranked(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _newest_answers(answers: dict[str, dict[str, str]]) -> list[tuple[str, dict[str, str]]]:
    # Newest first; on the same day, by question.
    return sorted(sorted(answers.items()), key=lambda qa: qa[1]["date"], reverse=True)


def _top(counts: dict[str, int]) -> list[tuple[str, int]]:
    return list(_ranked(counts).items())[:TOP]
