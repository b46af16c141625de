"""Synthetic customers with coherent histories: orders of real catalogue items, then reviews and support tickets
about what they bought (dated after the purchase), a CRM profile and survey answers that fit the persona.

Deterministic: every customer draws from its own numpy Generator seeded with (seed, index), dates count from
the spec's fixed base date, and nothing reads the clock; the same seed gives the same population.
Wording comes from the spec's templates. A capable LLM may rewrite reviews and tickets (``reword``, built by
``llm_reword``): the facts (items, dates, ratings, order numbers) are still drawn from the seed, and a rewrite that
drops the product is discarded for the template. The bundled 135M model invents facts, so none is used by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import numpy as np

from twinchat.domain.models import Message
from twinchat.domain.prompts import PromptTemplate
from twinchat.synth.catalogue import Basket, Catalogue, Product
from twinchat.synth.spec import SURVEY_FIELDS, Segment, Spec

GENERATOR = "twinchat.synth/1"
SATISFACTION_RATING = {"very satisfied": 5.0, "satisfied": 4.2, "neutral": 3.2, "dissatisfied": 2.2}
MAX_REDRAWS = 20  # a history equal to a real customer's is drawn again, at most this many times
Reword = Callable[[str, dict[str, Any]], str]  # (templated text, its fields) -> reworded text
Order = tuple[datetime, Basket, list[tuple[Product, int]]]  # when, StockCodes, (product, quantity) lines


@dataclass
class SyntheticCustomer:
    twin_id: str
    segment: str
    baskets: list[Basket] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def twin_id_of(seed: int, index: int, n: int) -> str:
    """``syn-<seed>-<index>``, zero-padded so that ids sort in generation order."""
    return f"syn-{seed}-{index:0{max(4, len(str(n - 1)))}d}"


def generate(
    spec: Spec, catalogue: Catalogue, *, n: int, seed: int, reword: Reword | None = None
) -> list[SyntheticCustomer]:
    """``n`` synthetic customers; no customer's set of items equals a real customer's (see privacy.py)."""
    if n < 1:
        raise ValueError("n: at least one customer")
    if seed < 0:
        raise ValueError("seed: must be 0 or more")
    real = {frozenset().union(*h) for h in catalogue.real_histories.values()}
    pools = {s.name: _pool(s, catalogue.products) for s in spec.segments}
    shares = np.array([s.share for s in spec.segments])
    shares = shares / shares.sum()
    return [
        _customer(spec, catalogue, pools, shares, real, twin_id_of(seed, i, n), seed, i, reword)
        for i in range(n)
    ]


def llm_reword(complete: Callable[[list[Message]], str], prompt: PromptTemplate) -> Reword:
    """A ``Reword`` over a chat model: ``complete(messages) -> text``, ``prompt`` the synth_reword template.

    A rewrite must keep the product's name (its first word at least) and stay short; otherwise the templated
    text is kept, so that every review and ticket still names what the customer bought.
    """

    def reword(text: str, fields: dict[str, Any]) -> str:
        variables = {**fields, "text": text, "kind": fields.get("kind", "review")}
        reply = complete(
            [
                Message("system", prompt.render("system", **variables)),
                Message("user", prompt.render("user", **variables)),
            ]
        ).strip()
        anchor = str(fields["product"]).split()[0].lower()
        return reply if reply and anchor in reply.lower() and len(reply) <= 4 * len(text) + 200 else text

    return reword


def records(customers: list[SyntheticCustomer]) -> Iterator[dict[str, Any]]:
    for c in customers:
        yield from c.records


def _pool(segment: Segment, products: tuple[Product, ...]) -> list[int]:
    """Indexes of the products this segment favours: in one of its categories or naming one of its keywords."""
    wanted, words = set(segment.categories), [k.upper() for k in segment.keywords]
    found = [
        i
        for i, p in enumerate(products)
        if wanted & set(p.categories) or any(w in p.description.upper() for w in words)
    ]
    return found or list(range(len(products)))


def _customer(
    spec: Spec,
    cat: Catalogue,
    pools: dict[str, list[int]],
    shares: np.ndarray,
    real: set[Basket],
    twin_id: str,
    seed: int,
    index: int,
    reword: Reword | None,
) -> SyntheticCustomer:
    rng = np.random.default_rng([seed, index])
    segment = spec.segments[int(rng.choice(len(spec.segments), p=shares))]
    persona = {
        "age_band": str(rng.choice(segment.age_bands)),
        "country": str(rng.choice(segment.countries)),
        **{k: _weighted(rng, segment.survey[k]) for k in SURVEY_FIELDS},
    }
    pool = pools[segment.name]
    favourites = [int(i) for i in rng.choice(pool, size=min(8, len(pool)), replace=False)]
    for _ in range(MAX_REDRAWS):
        orders = _orders(spec, cat, segment, rng, pool, favourites)
        if frozenset().union(*(codes for _, codes, _ in orders)) not in real:
            break
    else:
        raise RuntimeError(f"{twin_id}: every history drawn equals a real customer's; widen the spec's pool")
    customer = SyntheticCustomer(twin_id, segment.name)
    tag = {"synthetic": True, "generator": GENERATOR, "spec_version": spec.version, "segment": segment.name}
    first = orders[0][0]
    customer.records.append(
        {
            "customer_id": twin_id,
            "event_id": f"{twin_id}-profile",
            "text": f"Synthetic customer profile: age band {persona['age_band']}, lives in {persona['country']}, "
            f"a {segment.name.replace('-', ' ')} customer since {first.date().isoformat()}.",
            "timestamp": (first - timedelta(days=1)).isoformat(),
            "source": "crm",
            "kind": "profile",
            "age_band": persona["age_band"],
            "country": persona["country"],
            **tag,
        }
    )
    mood = SATISFACTION_RATING.get(persona["satisfaction"], 4.0)
    # Dissatisfied customers complain more: the propensity scales with how far below "satisfied" they are.
    complain = min(1.0, segment.complaint_propensity * (1 + max(0.0, 4.2 - mood)))
    t = spec.templates
    for k, (when, codes, lines) in enumerate(orders):
        invoice = f"S{seed}-{index}-{k + 1}"
        customer.baskets.append(codes)
        total = sum(q * p.price for p, q in lines)
        items = "; ".join(f"{q} x {p.description} at {p.price:.2f} GBP each" for p, q in lines)
        customer.records.append(
            {
                "customer_id": twin_id,
                "event_id": f"{twin_id}-order-{k + 1}",
                "text": f"Order {invoice} on {when.date().isoformat()} ({total:.2f} GBP): {items}.",
                "timestamp": when.isoformat(),
                "source": "purchase",
                "kind": "order",
                "invoice": invoice,
                "products": [p.description for p, _ in lines],
                "stock_codes": [p.stock_code for p, _ in lines],
                "total": round(total, 2),
                "country": persona["country"],
                **tag,
            }
        )
        product, quantity = lines[int(rng.integers(len(lines)))]
        fields = {
            "product": product.description.lower(),
            "invoice": invoice,
            "quantity": quantity,
            "date": when.date().isoformat(),
        }
        # What a review or a ticket is about: an item of this order, named as the catalogue names it.
        about = {"invoice": invoice, "product": product.description, "stock_code": product.stock_code, **tag}
        if rng.random() < segment.review_propensity:
            rating = int(np.clip(round(rng.normal(mood, 0.8)), 1, 5))
            tone = "positive" if rating >= 4 else "negative"
            template = str(rng.choice(t["review"][tone]))
            text = template.format(opinion=t["opinion"][str(rating)], **fields)
            at = when + timedelta(days=int(rng.integers(3, 31)))
            customer.records.append(
                {
                    "customer_id": twin_id,
                    "event_id": f"{twin_id}-review-{k + 1}",
                    "text": reword(text, {**fields, "kind": "review"}) if reword else text,
                    "timestamp": at.isoformat(),
                    "source": "review",
                    "rating": rating,
                    **about,
                }
            )
        if rng.random() < complain:
            ticket = t["ticket"][int(rng.integers(len(t["ticket"])))]
            text = str(ticket["text"]).format(**fields)
            at = when + timedelta(days=int(rng.integers(2, 15)))
            customer.records.append(
                {
                    "customer_id": twin_id,
                    "event_id": f"{twin_id}-ticket-{k + 1}",
                    "text": reword(text, {**fields, "kind": "support ticket"}) if reword else text,
                    "timestamp": at.isoformat(),
                    "source": "support",
                    "subject": str(ticket["subject"]),
                    **about,
                }
            )
    surveyed = orders[-1][0] + timedelta(days=int(rng.integers(1, 20)))
    for key in ("age_band", *SURVEY_FIELDS):
        question = str(t["survey"][key])
        customer.records.append(
            {
                "customer_id": twin_id,
                "event_id": f"{twin_id}-survey-{key}",
                "text": f"Q: {question} A: {persona[key]}",
                "timestamp": surveyed.isoformat(),
                "source": "survey",
                "question_id": f"synth-{key.replace('_', '-')}",
                "question": question,
                "answer": persona[key],
                **tag,
            }
        )
    return customer


def _orders(
    spec: Spec,
    cat: Catalogue,
    segment: Segment,
    rng: np.random.Generator,
    pool: list[int],
    favourites: list[int],
) -> list[Order]:
    """Orders from the start of the history to the base date, gaps drawn from the data and scaled to the
    segment's rate; each basket from the data's basket sizes times the segment's multiplier."""
    end = datetime.combine(spec.base_date, time(0))
    start = end - timedelta(days=365 * spec.history_years)
    scale = (365 / segment.orders_per_year) / float(np.mean(cat.gap_days) or 1)
    when = start + timedelta(days=float(rng.uniform(0, 365 / segment.orders_per_year)))
    orders: list[Order] = []
    while when <= end or not orders:
        size = max(
            1, round(cat.basket_sizes[int(rng.integers(len(cat.basket_sizes)))] * segment.basket_multiplier)
        )
        chosen: dict[int, int] = {}
        for _ in range(size * 3):  # a few more tries than items, as repeats are skipped
            if len(chosen) >= size:
                break
            draw = rng.random()
            source = favourites if draw < 0.5 else pool if draw < 0.85 else range(len(cat.products))
            item = int(rng.choice(source))
            if item not in chosen:
                chosen[item] = min(100, cat.quantities[int(rng.integers(len(cat.quantities)))])
        at = datetime.combine(min(when, end).date(), time(int(rng.integers(8, 18)), int(rng.integers(0, 60))))
        lines = [(cat.products[i], q) for i, q in chosen.items()]
        orders.append((at, frozenset(p.stock_code for p, _ in lines), lines))
        gap = cat.gap_days[int(rng.integers(len(cat.gap_days)))] * scale
        when = when + timedelta(days=max(1.0, gap))
    return orders


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    options = list(weights)
    p = np.array([weights[o] for o in options], dtype=float)
    return str(options[int(rng.choice(len(options), p=p / p.sum()))])
