"""The UCI Online Retail importer: invoices or lines as purchase events, guests skipped, bad rows reported."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest

from twinchat.domain.events import Event
from twinchat.domain.readers import RawRecord, RowProblem, UnreadableInput
from twinchat.importers.online_retail import OnlineRetailImport, looks_like_online_retail

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
SAMPLE = Path("/work/shared/data/online_retail/online_retail_sample.csv")


def write_csv(tmp_path: Path, *rows: str, name: str = "retail.csv", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def run(path: Path, **options: object) -> tuple[OnlineRetailImport, list[RawRecord], list[RowProblem]]:
    importer = OnlineRetailImport(path, **options)  # type: ignore[arg-type]
    items = list(importer.records())
    raws = [i for i in items if isinstance(i, RawRecord)]
    problems = [i for i in items if isinstance(i, RowProblem)]
    assert len(raws) + len(problems) == len(items)
    for raw in raws:
        Event.from_record(raw.record)  # every record the importer yields must be a valid event
    return importer, raws, problems


# Two invoices of customer 17365 (one with two lines), one of 13607, and a guest row.
BASIC = (
    "540798,20970,PINK FLORAL FELTCRAFT SHOULDER BAG,6,2011-01-11 12:11:00,3.75,17365.0,United Kingdom",
    "540798,22423,REGENCY CAKESTAND 3 TIER,1,2011-01-11 12:11:00,12.75,17365.0,United Kingdom",
    "573415,21166,COOK WITH WINE METAL SIGN ,1,2011-10-30 16:17:00,2.08,13607.0,United Kingdom",
    "578065,23169,CLASSIC GLASS COOKIE JAR,1,2011-11-22 15:41:00,8.29,,United Kingdom",
    "553156,22516,CHILDS GARDEN RAKE BLUE,2,2011-05-13 14:58:00,2.1,17365.0,France",
)


def test_one_record_per_customer_invoice(tmp_path: Path) -> None:
    path = write_csv(tmp_path, *BASIC)
    importer, raws, problems = run(path)
    assert problems == []
    assert [(r.record["customer_id"], r.record["invoice"]) for r in raws] == [
        ("17365", "540798"),
        ("13607", "573415"),
        ("17365", "553156"),
    ]
    first = raws[0]
    assert first.file == str(path)
    assert first.line == 2  # the invoice's first line
    rec = first.record
    assert rec["text"] == (
        "Order 540798 on 2011-01-11 (35.25 GBP): 6 x PINK FLORAL FELTCRAFT SHOULDER BAG at 3.75 GBP each; "
        "1 x REGENCY CAKESTAND 3 TIER at 12.75 GBP each."
    )
    assert rec["products"] == ["PINK FLORAL FELTCRAFT SHOULDER BAG", "REGENCY CAKESTAND 3 TIER"]
    assert rec["total"] == 35.25
    assert rec["kind"] == "order"
    assert rec["source"] == "purchase"
    assert rec["event_id"] == "retail-540798"
    assert rec["country"] == "United Kingdom"
    event = Event.from_record(rec)
    assert event.timestamp is not None and event.timestamp.isoformat() == "2011-01-11T12:11:00+00:00"
    assert event.attributes["invoice"] == "540798"
    # Description whitespace is normalised.
    assert raws[1].record["products"] == ["COOK WITH WINE METAL SIGN"]
    assert raws[2].record["country"] == "France"


def test_one_record_per_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, *BASIC)
    _, raws, problems = run(path, per="line")
    assert problems == []
    assert [r.line for r in raws] == [2, 3, 4, 6]
    rec = raws[0].record
    assert rec["customer_id"] == "17365"
    assert (
        rec["text"]
        == "Bought 6 x PINK FLORAL FELTCRAFT SHOULDER BAG at 3.75 GBP each (22.50 GBP) on 2011-01-11."
    )
    assert rec["kind"] == "order_line"
    assert (rec["quantity"], rec["unit_price"], rec["stock_code"]) == (6, 3.75, "20970")
    assert len({r.record["event_id"] for r in raws}) == len(raws)


def test_guest_rows_are_counted_and_not_yielded(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        *BASIC,
        "578066,23170,GUEST ITEM,1,2011-11-22 15:41:00,1.00,   ,United Kingdom",
    )
    for per in ("invoice", "line"):
        importer, raws, problems = run(path, per=per)
        assert problems == []
        assert all(r.record["customer_id"] for r in raws)
        assert "578065" not in {r.record["invoice"] for r in raws}
        assert sum(importer.skipped.values()) == 2
        ((reason, n),) = importer.skipped.items()
        assert "guest" in reason and n == 2


def test_spreadsheet_customer_ids_lose_their_dot_zero(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "540798,20970,BAG,6,2011-01-11 12:11:00,3.75,17365.0,United Kingdom",
        "540799,20970,BAG,6,2011-01-12 12:11:00,3.75,17365,United Kingdom",
    )
    _, raws, _ = run(path)
    assert [r.record["customer_id"] for r in raws] == ["17365", "17365"]
    assert [Event.from_record(r.record).customer_id for r in raws] == ["17365", "17365"]


@pytest.mark.parametrize("per", ["invoice", "line"])
def test_c_prefixed_invoices_are_cancellations(tmp_path: Path, per: str) -> None:
    path = write_csv(
        tmp_path,
        "C540800,20970,PINK FLORAL FELTCRAFT SHOULDER BAG,-6,2011-01-12 09:00:00,3.75,17365.0,United Kingdom",
    )
    _, (raw,), _ = run(path, per=per)
    rec = raw.record
    assert rec["kind"] == "cancellation"
    assert "6 x PINK FLORAL FELTCRAFT SHOULDER BAG" in rec["text"]
    assert "-6" not in rec["text"]
    if per == "invoice":
        assert rec["text"].startswith("Cancelled order C540800 on 2011-01-12 (22.50 GBP)")
    else:
        assert rec["text"].startswith("Cancelled an order of 6 x")
        assert rec["quantity"] == -6


def test_negative_quantity_line_is_a_cancellation(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "540801,20970,BAG,-2,2011-01-12 09:00:00,3.75,17365.0,United Kingdom")
    _, (raw,), _ = run(path, per="line")
    assert raw.record["kind"] == "cancellation"
    assert raw.record["text"].startswith("Cancelled an order of 2 x BAG")


def test_negative_quantity_invoice_is_not_reported_as_an_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "540801,20970,BAG,-2,2011-01-12 09:00:00,3.75,17365.0,United Kingdom")
    _, (raw,), _ = run(path, per="invoice")
    assert raw.record["kind"] == "cancellation"


def test_customers_keeps_those_with_most_invoices(tmp_path: Path) -> None:
    rows = [
        # customer 111: 3 invoices (4 lines); 222: 2 invoices; 333: 2 invoices; 444: 1 invoice
        "500001,A,MUG,1,2011-01-01 10:00:00,1.00,111.0,UK",
        "500001,B,PLATE,1,2011-01-01 10:00:00,1.00,111.0,UK",
        "500002,A,MUG,1,2011-01-02 10:00:00,1.00,111.0,UK",
        "500003,A,MUG,1,2011-01-03 10:00:00,1.00,111.0,UK",
        "500004,A,MUG,1,2011-01-04 10:00:00,1.00,333.0,UK",
        "500005,A,MUG,1,2011-01-05 10:00:00,1.00,333.0,UK",
        "500006,A,MUG,5,2011-01-06 10:00:00,1.00,444.0,UK",
        "500007,A,MUG,1,2011-01-07 10:00:00,1.00,222.0,UK",
        "500008,A,MUG,1,2011-01-08 10:00:00,1.00,222.0,UK",
        "500009,A,MUG,1,2011-01-09 10:00:00,1.00,,UK",
    ]
    path = write_csv(tmp_path, *rows)
    importer, raws, _ = run(path, customers=2)
    # 111 has most invoices; 222 and 333 tie at two and the tie goes to the smaller id.
    assert {r.record["customer_id"] for r in raws} == {"111", "222"}
    assert len(raws) == 5
    assert importer.skipped["customer not among the selected"] == 3  # the lines of 333 and 444
    assert sum(importer.skipped.values()) == 4  # and the guest

    _, lines, _ = run(path, per="line", customers=1)
    assert {r.record["customer_id"] for r in lines} == {"111"}
    assert len(lines) == 4

    _, everyone, _ = run(path, customers=10)
    assert {r.record["customer_id"] for r in everyone} == {"111", "222", "333", "444"}


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (
            "540798,20970,BAG,six,2011-01-11 12:11:00,3.75,17365.0,UK",
            "Quantity",
            "'six' is not a whole number",
        ),
        ("540798,20970,BAG,1.5,2011-01-11 12:11:00,3.75,17365.0,UK", "Quantity", "not a whole number"),
        ("540798,20970,BAG,6,2011-01-11 12:11:00,cheap,17365.0,UK", "UnitPrice", "'cheap' is not a number"),
        ("540798,20970,BAG,6,11/01/2011 12:11,3.75,17365.0,UK", "InvoiceDate", "is not a date like"),
        ("540798,20970,BAG,6,,3.75,17365.0,UK", "InvoiceDate", "is empty"),
        ("540798,20970,,6,2011-01-11 12:11:00,3.75,17365.0,UK", "Description", "is empty"),
        ("540798,20970,   ,6,2011-01-11 12:11:00,3.75,17365.0,UK", "Description", "is empty"),
    ],
)
def test_bad_rows_are_row_problems_with_line_and_field(
    tmp_path: Path, row: str, field: str, reason: str
) -> None:
    good = "540797,20970,BAG,6,2011-01-11 12:11:00,3.75,17365.0,UK"
    path = write_csv(tmp_path, good, '540796,1,"MULTI\nLINE",1,2011-01-11 12:11:00,1.0,17365.0,UK', row, good)
    for per in ("invoice", "line"):
        _, raws, problems = run(path, per=per)
        (problem,) = problems
        assert problem.file == str(path)
        assert problem.line == 5  # header, good, a row spanning lines 3-4, then the bad row
        assert problem.field == field
        assert reason in problem.reason
        assert str(problem).startswith(f"{path}:line 5: {field}: ")
        assert {r.record["invoice"] for r in raws} == {"540797", "540796"}


def test_a_csv_without_the_online_retail_columns_is_unreadable(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "c1,Bought mugs", header="customer_id,text")
    with pytest.raises(UnreadableInput) as info:
        list(OnlineRetailImport(path).records())
    assert str(path) in str(info.value)
    assert "CustomerID" in str(info.value) and "InvoiceNo" in str(info.value)


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInput, match="no such file"):
        list(OnlineRetailImport(tmp_path / "absent.csv").records())


def test_a_non_utf8_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_bytes(
        (HEADER + "\n540798,20970,CAF\u00c9 BAG,6,2011-01-11 12:11:00,3.75,17365.0,United Kingdom\n").encode(
            "latin-1"
        )
    )
    with pytest.raises(UnreadableInput):
        list(OnlineRetailImport(path).records())


def test_looks_like_online_retail(tmp_path: Path) -> None:
    assert looks_like_online_retail(write_csv(tmp_path, *BASIC))
    bom = tmp_path / "bom.csv"
    bom.write_text("\ufeff InvoiceNo , StockCode ,CustomerID\n", encoding="utf-8")
    assert looks_like_online_retail(bom)
    assert not looks_like_online_retail(
        write_csv(tmp_path, "c1,a", name="events.csv", header="customer_id,text")
    )
    assert not looks_like_online_retail(write_csv(tmp_path, *BASIC, name="retail.tsv"))
    assert not looks_like_online_retail(tmp_path / "absent.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert not looks_like_online_retail(empty)


def test_looks_like_online_retail_does_not_raise_on_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes("customer_id,text\nc1,Caf\u00e9\n".encode("latin-1"))
    assert looks_like_online_retail(path) is False


def test_first_2000_lines_of_the_real_sample(tmp_path: Path) -> None:
    if not SAMPLE.is_file():
        pytest.skip(f"the shared Online Retail sample is not present at {SAMPLE}")
    path = tmp_path / "online_retail_head.csv"
    with SAMPLE.open(encoding="utf-8", newline="") as source:
        path.write_text("".join(islice(source, 2000)), encoding="utf-8")
    assert looks_like_online_retail(path)
    for per in ("invoice", "line"):
        importer, raws, problems = run(path, per=per)  # run() validates every record with Event.from_record
        assert problems == [], [str(p) for p in problems[:5]]
        assert raws
        assert importer.skipped["guest checkout (no CustomerID)"] > 0
        assert all(r.record["customer_id"].isdigit() for r in raws)
        assert len({r.record["event_id"] for r in raws}) == len(raws)
