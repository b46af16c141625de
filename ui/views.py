"""How service results look on a page: profile cards, evidence and memory tables, chat messages.

Only presentation: every value comes from TwinService as it returned it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from twinchat.domain.models import Answer
from ui.common import clip

EVIDENCE_COLUMNS = ["score", "source", "date", "text", "event"]
EVIDENCE_WIDTHS: list[str | int] = ["60px", "92px", "98px", "270px", "190px"]
MEMORY_COLUMNS = ["date", "source", "text", "status", "event"]
MEMORY_WIDTHS: list[str | int] = ["105px", "100px", "480px", "190px", "210px"]


def profile_card(document: dict[str, Any]) -> str:
    """Markdown for `show_document(twin, profile)`: who the twin is, its summary, its main facts."""
    twin, facts = document["twin"], document["profile"]
    # The "synthetic" label of issue 7's generated twins: always shown, never only in the data.
    badge = ' <span class="synthetic-badge">SYNTHETIC</span>' if twin.get("synthetic") else ""
    panels = f" · panels: {', '.join(twin['panels'])}" if twin.get("panels") else ""
    known_as = ", ".join(f"{i['kind']} {i['value']}" for i in twin.get("identifiers", []))
    lines = [
        f"### Twin {twin['twin_id']}{badge}",
        f"{twin['n_events']} events{panels}",
        *([f"Known as: {_cell(known_as)}"] if known_as else []),
        "",
        f"> {document['summary'] or 'No summary yet.'}",
        "",
    ]
    buys = facts["purchases"]
    if buys["orders"]:
        currency = f" {buys['currency']}" if buys["currency"] else ""
        lines.append(
            f"- **Orders**: {buys['orders']} ({buys['first'] or 'undated'} to {buys['last'] or 'undated'}), "
            f"spend {buys['spend']:,.2f}{currency}"
        )
        if buys["cancellations"]:
            lines.append(f"- **Cancellations**: {buys['cancellations']}")
        categories = ", ".join(f"{c['category']} ({c['count']})" for c in buys["favourite_categories"])
        if categories:
            lines.append(f"- **Favourite categories**: {_cell(categories)}")
        products = ", ".join(p["product"] for p in buys["favourite_products"][:3])
        if products:
            lines.append(f"- **Favourite products**: {_cell(products)}")
        if buys["countries"]:
            lines.append(f"- **Countries**: {_cell(', '.join(buys['countries']))}")
    surveys, reviews, support = facts["surveys"], facts["reviews"], facts["support"]
    if surveys["answers"]:
        lines.append(f"- **Survey answers**: {surveys['answers']}")
    if reviews["count"]:
        rating = f", average rating {reviews['average_rating']}" if reviews["average_rating"] else ""
        lines.append(f"- **Reviews**: {reviews['count']}{rating}")
    if support["issues"]:
        lines.append(f"- **Support issues**: {support['issues']}")
    events = facts["events"]
    sources = ", ".join(f"{s} {n}" for s, n in events["by_source"].items())
    span = f"{events['first'] or 'undated'} to {events['last'] or 'undated'}"
    lines.append(f"- **History**: {sources or 'none'} ({span})")
    return "\n".join(lines)


def predictions_card(p: dict[str, Any]) -> str:
    """Markdown for a twin's behaviour predictions (`TwinService.predictions`), always labelled simulated."""
    lines = ["#### Predictions (simulated)"]
    if not p.get("available"):
        return "\n".join([*lines, f"{p.get('refused') or p.get('reason')}"])
    churn, conf, ev, fitted = p["churn_risk"], p["confidence"], p["evidence"], p["fitted_on"]
    interval = conf.get("p_buy_again_90")
    around = f" (90% {interval[0]:.2f} to {interval[1]:.2f})" if interval else ""
    lines += [
        f"{p['model']} fitted on {fitted['customers']} customers, as of {p['as_of']}; "
        f"confidence {conf['level']}: {_cell(conf['basis'])}",
        "",
        f"- **Buys again within {p['horizon_days']} days**: {p['p_buy_again_90d']:.2f}{around}",
        f"- **Expected purchases**: {p['expected_purchases_90d']:.2f}",
        f"- **Churn risk**: {churn['value']:.2f} ({churn['level']}: {churn['definition']})",
        f"- **Evidence**: {ev['purchase_days']} purchase days, {ev['first_purchase']} to {ev['last_purchase']}",
    ]
    trends = p["category_trends"]
    if not trends["available"]:
        return "\n".join([*lines, f"- **Interest drift**: {trends['reason']}"])
    drift = ", ".join(
        f"{c['category']} {c['trend']} ({c['earlier']} to {c['recent']} days)" for c in trends["categories"]
    )
    return "\n".join([*lines, f"- **Interest drift**: {_cell(drift) or 'none'}"])


def _cell(text: str) -> str:
    return clip(text, 160)


def evidence_table(answer: Answer, memories: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The events an answer stands on, with their source, date and relevance (cosine similarity)."""
    by_id = {m["event_id"]: m for m in memories}
    rows = []
    for c in answer.citations:
        memory = by_id.get(c.event_id, {})
        rows.append(
            {
                "event": c.event_id,
                "source": memory.get("source", ""),
                "date": str(memory.get("timestamp", ""))[:10],
                "score": round(c.score, 3),
                "text": c.text,
            }
        )
    return pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)


def memory_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """What a twin knows, newest first: valid memories, and those superseded or forgotten with since when."""
    out = []
    for row in rows:
        status = row.get("status") or {}
        state = (
            "valid"
            if row["valid"]
            else f"{status.get('state', 'invalid')} {status.get('invalid_since', '')[:10]}"
        )
        out.append(
            {
                "date": str(row.get("timestamp", "undated"))[:10],
                "source": row["source"],
                "text": row["text"],
                "status": state,
                "event": row["event_id"],
            }
        )
    return pd.DataFrame(out, columns=MEMORY_COLUMNS)


def answer_message(answer: Answer) -> str:
    """An assistant turn as shown: the answer, then what it is (simulated or the customer's own correction)."""
    if not answer.simulated:
        return f"{answer.answer}\n\n*stored as your correction*"
    if answer.abstained:
        return f"{answer.answer}\n\n*simulated · the history does not cover this*"
    n = len(answer.citations)
    return f"{answer.answer}\n\n*simulated · {n} {'event' if n == 1 else 'events'} of evidence*"
