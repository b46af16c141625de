"""UCI Online Retail purchase lines (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
CustomerID, Country) as purchase events: one per invoice (default) or one per invoice line.

Rows without a CustomerID are guest checkouts: they belong to no customer, so they are counted and skipped.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from twinchat.domain.readers import RawRecord, RowProblem, UnreadableInput

COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
Granularity = Literal["invoice", "line"]


def looks_like_online_retail(path: Path) -> bool:
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), [])
    except UnicodeDecodeError:
        return False  # not UTF-8: the events reader reports it as unreadable
    return {"InvoiceNo", "StockCode", "CustomerID"} <= {h.strip() for h in header}


@dataclass
class _Line:
    line: int
    invoice: str
    stock_code: str
    product: str
    quantity: int
    price: float
    when: datetime
    customer: str
    country: str


@dataclass
class OnlineRetailImport:
    """Reads the file and yields records for TwinService.ingest_records; counts what it skipped."""

    path: Path
    per: Granularity = "invoice"
    customers: int | None = None  # keep only the N customers with the most invoices
    skipped: Counter[str] = field(default_factory=Counter)

    def records(self) -> Iterator[RawRecord | RowProblem]:
        lines, problems = self._read()
        yield from problems
        if self.customers is not None:
            invoices = Counter(
                {c: len({x.invoice for x in lines if x.customer == c}) for c in {x.customer for x in lines}}
            )
            keep = {c for c, _ in sorted(invoices.items(), key=lambda kv: (-kv[1], kv[0]))[: self.customers]}
            self.skipped["customer not among the selected"] += sum(1 for x in lines if x.customer not in keep)
            lines = [x for x in lines if x.customer in keep]
        if self.per == "line":
            for x in lines:
                yield RawRecord(str(self.path), x.line, _line_record(x))
            return
        groups: dict[tuple[str, str], list[_Line]] = {}
        for x in lines:
            groups.setdefault((x.customer, x.invoice), []).append(x)
        for group in groups.values():
            yield RawRecord(str(self.path), group[0].line, _invoice_record(group))

    def _read(self) -> tuple[list[_Line], list[RowProblem]]:
        if not self.path.is_file():
            raise UnreadableInput(f"{self.path}: no such file")
        try:
            return self._read_utf8()
        except UnicodeDecodeError as exc:
            raise UnreadableInput(
                f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-encode it, e.g. iconv -f latin1"
            ) from None

    def _read_utf8(self) -> tuple[list[_Line], list[RowProblem]]:
        name, lines, problems = str(self.path), [], []
        with self.path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = set(COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise UnreadableInput(
                    f"{self.path}: not an Online Retail file, it lacks {', '.join(sorted(missing))}"
                )
            for row in reader:
                customer = (row["CustomerID"] or "").strip()
                if not customer:
                    self.skipped["guest checkout (no CustomerID)"] += 1
                    continue
                try:
                    lines.append(_parse(row, reader.line_num))
                except _BadField as exc:
                    problems.append(RowProblem(name, reader.line_num, exc.field, exc.reason))
        return lines, problems


class _BadField(ValueError):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


def _parse(row: dict[str, str], line: int) -> _Line:
    def number(name: str, kind: type) -> Any:
        try:
            return kind(row[name].strip())
        except (ValueError, AttributeError):
            raise _BadField(
                name, f"{row[name]!r} is not a {'whole number' if kind is int else 'number'}"
            ) from None

    try:
        when = datetime.fromisoformat(row["InvoiceDate"].strip())
    except (ValueError, AttributeError):
        raise _BadField(
            "InvoiceDate", f"{row['InvoiceDate']!r} is not a date like 2011-03-04 10:15:00"
        ) from None
    product = " ".join((row["Description"] or "").split())
    if not product:
        raise _BadField("Description", "is empty: a purchase needs a product")
    customer = row["CustomerID"].strip()
    customer = customer[:-2] if customer.endswith(".0") else customer
    return _Line(
        line,
        row["InvoiceNo"].strip(),
        row["StockCode"].strip(),
        product,
        number("Quantity", int),
        number("UnitPrice", float),
        when,
        customer,
        (row["Country"] or "").strip(),
    )


def _describe(x: _Line) -> str:
    return f"{abs(x.quantity)} x {x.product} at {x.price:.2f} GBP each"


def _line_record(x: _Line) -> dict[str, Any]:
    cancelled = x.invoice.startswith("C") or x.quantity < 0
    verb = "Cancelled an order of" if cancelled else "Bought"
    return {
        "customer_id": x.customer,
        "event_id": f"retail-{x.invoice}-{x.line}",
        "text": f"{verb} {_describe(x)} ({abs(x.quantity) * x.price:.2f} GBP) on {x.when.date().isoformat()}.",
        "timestamp": x.when.isoformat(),
        "source": "purchase",
        "kind": "cancellation" if cancelled else "order_line",
        "invoice": x.invoice,
        "stock_code": x.stock_code,
        "product": x.product,
        "quantity": x.quantity,
        "unit_price": x.price,
        "country": x.country,
    }


def _invoice_record(group: list[_Line]) -> dict[str, Any]:
    first = group[0]
    cancelled = first.invoice.startswith("C") or all(x.quantity < 0 for x in group)
    total = sum(abs(x.quantity) * x.price for x in group)
    items = "; ".join(_describe(x) for x in group)
    what = "Cancelled order" if cancelled else "Order"
    return {
        "customer_id": first.customer,
        "event_id": f"retail-{first.invoice}",
        "text": f"{what} {first.invoice} on {first.when.date().isoformat()} ({total:.2f} GBP): {items}.",
        "timestamp": first.when.isoformat(),
        "source": "purchase",
        "kind": "cancellation" if cancelled else "order",
        "invoice": first.invoice,
        "products": [x.product for x in group],
        "total": round(total, 2),
        "country": first.country,
    }
