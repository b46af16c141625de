"""UCI Online Retail purchase lines (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice,
CustomerID, Country) as purchase events: one per invoice (default) or one per invoice line.

The import itself is declared by the shipped mappings ``online_retail.yaml`` and ``online_retail_lines.yaml``
(twinchat.importers.mapping); this module names them for the CLI, the demo and the evals, and recognises the
layout. Rows without a CustomerID are guest checkouts: they belong to no customer, so they are counted and skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from twinchat.importers.mapping import MappedImport, load_mapping

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


def OnlineRetailImport(  # noqa: N802 - reads as the importer it returns
    path: Path, per: Granularity = "invoice", customers: int | None = None
) -> MappedImport:
    """The Online Retail file ``path`` read by its shipped mapping; ``customers``: the N with most invoices."""
    mapping = load_mapping("online_retail" if per == "invoice" else "online_retail_lines")
    return MappedImport(mapping, [path], customers=customers)
