"""What the generator is calibrated on: the products of an Online Retail file and its empirical distributions.

Kept whole in memory: the catalogue (one row per StockCode: description, median unit price, categories), the
basket sizes (lines per invoice), the quantities per line, the gaps in days between a customer's orders, and
every real customer's sequence of baskets, which the privacy check compares synthetic histories with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from twinchat.domain.categories import load_categories
from twinchat.domain.readers import UnreadableInput
from twinchat.importers.online_retail import COLUMNS

Basket = frozenset[str]


@dataclass(frozen=True)
class Product:
    stock_code: str
    description: str
    price: float
    categories: tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    products: tuple[Product, ...]
    basket_sizes: tuple[int, ...]
    quantities: tuple[int, ...]
    gap_days: tuple[float, ...]
    real_histories: dict[str, tuple[Basket, ...]]  # real customer id -> baskets (StockCode sets) by date
    source: str


def read_catalogue(path: Path) -> Catalogue:
    """Read an Online Retail CSV; cancellations, returns, guest checkouts and fees are left out."""
    import pandas as pd

    if not path.is_file():
        raise UnreadableInput(f"{path}: no such file (the Online Retail sample calibrates the generator)")
    try:
        frame = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise UnreadableInput(f"{path}: not a readable CSV ({exc})") from None
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise UnreadableInput(f"{path}: not an Online Retail file, it lacks {', '.join(sorted(missing))}")
    categories = load_categories()
    frame["Description"] = frame["Description"].fillna("").map(lambda d: " ".join(str(d).split()))
    frame = frame[
        frame["CustomerID"].notna()
        & ~frame["InvoiceNo"].str.startswith("C")
        & (frame["Quantity"] > 0)
        & (frame["UnitPrice"] > 0)
        & (frame["Description"] != "")
        & ~frame["Description"].map(categories.is_fee)
    ].copy()
    if frame.empty:
        raise UnreadableInput(f"{path}: no purchase lines with a customer, a product and a price")
    frame["CustomerID"] = frame["CustomerID"].str.removesuffix(".0")
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"])
    by_code = frame.groupby("StockCode").agg(
        description=("Description", "first"), price=("UnitPrice", "median")
    )
    products = tuple(
        Product(
            str(code),
            str(row.description),
            round(float(row.price), 2),
            tuple(categories.categorize(str(row.description))),
        )
        for code, row in by_code.sort_index().iterrows()
    )
    invoices = frame.groupby("InvoiceNo").agg(
        customer=("CustomerID", "first"), when=("InvoiceDate", "min"), lines=("StockCode", "size")
    )
    gaps: list[float] = []
    for _, dates in invoices.groupby("customer")["when"]:
        days = sorted({d.normalize() for d in dates})
        gaps.extend((b - a).days for a, b in zip(days, days[1:], strict=False))
    baskets = frame.groupby("InvoiceNo")["StockCode"].agg(frozenset)
    ordered = invoices.assign(basket=baskets).sort_values(["customer", "when"])
    histories = {str(c): tuple(g["basket"]) for c, g in ordered.groupby("customer", sort=True)}
    return Catalogue(
        products=products,
        basket_sizes=tuple(int(n) for n in invoices["lines"]),
        quantities=tuple(int(q) for q in frame["Quantity"]),
        gap_days=tuple(float(g) for g in gaps) or (30.0,),
        real_histories=histories,
        source=str(path),
    )
