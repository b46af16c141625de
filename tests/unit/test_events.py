"""Event.from_record: validation, timestamps, stable content ids, attributes, sources, round trip."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from twinchat.domain.events import MAX_ID_CHARS, MAX_TEXT_CHARS, Event, EventError, parse_timestamp


def record(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {"customer_id": "c1", "text": "Bought 2 mugs"}
    base.update(overrides)
    return base


# --- required fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["customer_id", "text"])
def test_missing_required_field_names_the_field(name: str) -> None:
    rec = record()
    del rec[name]
    with pytest.raises(EventError) as info:
        Event.from_record(rec)
    assert info.value.field == name
    assert "required" in info.value.reason
    assert str(info.value).startswith(f"{name}: ")


@pytest.mark.parametrize("name", ["customer_id", "text"])
@pytest.mark.parametrize("blank", ["", "   ", "\t\n", None])
def test_blank_required_field_names_the_field(name: str, blank: object) -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(record(**{name: blank}))
    assert info.value.field == name


@pytest.mark.parametrize("name", ["customer_id", "text"])
@pytest.mark.parametrize("value", [["c1"], {"id": 1}, True, False])
def test_non_string_required_field_is_rejected_with_its_type(name: str, value: object) -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(record(**{name: value}))
    assert info.value.field == name
    assert type(value).__name__ in info.value.reason


@pytest.mark.parametrize("name", ["customer_id", "event_id", "text", "source"])
def test_nul_characters_are_rejected_where_a_database_would_choke(name: str) -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(record(**{name: "a\x00b"}))
    assert (info.value.field, info.value.reason) == (name, "contains a NUL character")


@pytest.mark.parametrize("name", ["customer_id", "event_id"])
def test_ids_longer_than_the_metadata_store_indexes_are_rejected(name: str) -> None:
    assert Event.from_record(record(**{name: "x" * MAX_ID_CHARS}))
    with pytest.raises(EventError, match=f"513 characters; an id has at most {MAX_ID_CHARS}"):
        Event.from_record(record(**{name: "x" * 513}))


def test_a_record_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(["c1", "text"])  # type: ignore[arg-type]
    assert info.value.field == "record"
    assert "list" in info.value.reason


def test_event_error_is_a_value_error() -> None:
    assert issubclass(EventError, ValueError)


def test_spreadsheet_float_customer_id_becomes_a_whole_number() -> None:
    assert Event.from_record(record(customer_id=17850.0)).customer_id == "17850"
    assert Event.from_record(record(customer_id=17850)).customer_id == "17850"
    # A real fraction is kept as it is, not truncated into another customer's id.
    assert Event.from_record(record(customer_id=17850.5)).customer_id == "17850.5"


def test_required_strings_are_stripped() -> None:
    event = Event.from_record(record(customer_id="  c1 ", text="  Bought 2 mugs \n"))
    assert event.customer_id == "c1"
    assert event.text == "Bought 2 mugs"


def test_text_at_the_limit_is_accepted_and_one_more_character_is_not() -> None:
    assert len(Event.from_record(record(text="x" * MAX_TEXT_CHARS)).text) == MAX_TEXT_CHARS
    with pytest.raises(EventError) as info:
        Event.from_record(record(text="x" * (MAX_TEXT_CHARS + 1)))
    assert info.value.field == "text"
    assert str(MAX_TEXT_CHARS) in info.value.reason


def test_extra_fields_that_are_not_json_values_are_rejected() -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(record(basket={"a", "b"}))
    assert info.value.field == "attributes"


# --- timestamps --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2011-03-04", datetime(2011, 3, 4, tzinfo=UTC)),
        ("2011-03-04T10:15:00", datetime(2011, 3, 4, 10, 15, tzinfo=UTC)),
        ("2011-03-04 10:15:00", datetime(2011, 3, 4, 10, 15, tzinfo=UTC)),
        ("2011-03-04T10:15:00Z", datetime(2011, 3, 4, 10, 15, tzinfo=UTC)),
        ("  2011-03-04T10:15:00Z  ", datetime(2011, 3, 4, 10, 15, tzinfo=UTC)),
        ("2011-03-04T10:15:00+01:00", datetime(2011, 3, 4, 9, 15, tzinfo=UTC)),
        (1299233700, datetime(2011, 3, 4, 10, 15, tzinfo=UTC)),
        (1299233700.5, datetime(2011, 3, 4, 10, 15, 0, 500000, tzinfo=UTC)),
        (date(2011, 3, 4), datetime(2011, 3, 4, tzinfo=UTC)),
        (datetime(2011, 3, 4, 10, 15), datetime(2011, 3, 4, 10, 15, tzinfo=UTC)),
    ],
)
def test_accepted_timestamps(raw: object, expected: datetime) -> None:
    parsed = Event.from_record(record(timestamp=raw)).timestamp
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


def test_naive_timestamps_are_taken_as_utc_and_offsets_are_kept() -> None:
    naive = parse_timestamp("2011-03-04T10:15:00")
    assert naive is not None and naive.utcoffset() == timedelta(0)
    plus_one = parse_timestamp("2011-03-04T10:15:00+01:00")
    assert plus_one is not None and plus_one.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_blank_timestamp_means_undated(blank: object) -> None:
    assert Event.from_record(record(timestamp=blank)).timestamp is None


@pytest.mark.parametrize("bad", ["yesterday", "04/03/2011", "2011-13-01", "2011-03-04T25:00"])
def test_bad_timestamp_names_the_field_and_what_is_accepted(bad: str) -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(record(timestamp=bad))
    assert info.value.field == "timestamp"
    assert repr(bad) in info.value.reason
    assert "ISO 8601" in info.value.reason
    assert "accepted" in info.value.reason and "2011-03-04" in info.value.reason


@pytest.mark.parametrize("bad", [True, ["2011-03-04"], {"date": "2011-03-04"}])
def test_timestamp_of_the_wrong_type_is_rejected(bad: object) -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(record(timestamp=bad))
    assert info.value.field == "timestamp"
    assert type(bad).__name__ in info.value.reason


@pytest.mark.parametrize("bad", [1_700_000_000_000, 1e20, float("inf"), float("nan")])
def test_out_of_range_epoch_is_an_event_error(bad: float) -> None:
    with pytest.raises(EventError) as info:
        Event.from_record(record(timestamp=bad))
    assert info.value.field == "timestamp"


# --- ids -------------------------------------------------------------------------------------------------


def test_same_record_gives_same_id_regardless_of_key_order() -> None:
    a = {
        "customer_id": "c1",
        "text": "Bought mugs",
        "source": "purchase",
        "timestamp": "2011-03-04",
        "store": "Leeds",
        "basket": {"mugs": 2, "plates": 1},
    }
    b = {
        "basket": {"plates": 1, "mugs": 2},
        "store": "Leeds",
        "timestamp": "2011-03-04",
        "source": "purchase",
        "text": "Bought mugs",
        "customer_id": "c1",
    }
    first, second = Event.from_record(a), Event.from_record(b)
    assert first.event_id == second.event_id
    assert first.event_id.startswith("ev_")
    assert first == second


def test_equivalent_spellings_give_the_same_id() -> None:
    plain = Event.from_record(record(source="crm", timestamp="2011-03-04T00:00:00"))
    assert Event.from_record(record(source="CRM", timestamp="2011-03-04")).event_id == plain.event_id
    assert (
        Event.from_record(
            record(customer_id=" c1 ", text=" Bought 2 mugs ", source="crm", timestamp="2011-03-04T00:00:00Z")
        ).event_id
        == plain.event_id
    )


@pytest.mark.parametrize(
    "change",
    [
        {"text": "Bought 3 mugs"},
        {"customer_id": "c2"},
        {"timestamp": "2011-03-05"},
        {"source": "review"},
        {"kind": "order"},
        {"store": "York"},
    ],
)
def test_different_content_gives_a_different_id(change: dict[str, object]) -> None:
    base = record(timestamp="2011-03-04", source="purchase", store="Leeds")
    assert Event.from_record(base).event_id != Event.from_record({**base, **change}).event_id


def test_explicit_event_id_is_kept() -> None:
    event = Event.from_record(record(event_id="  inv-536365 "))
    assert event.event_id == "inv-536365"
    assert Event.from_record(record(event_id="inv-536365", text="Other text")).event_id == "inv-536365"


def test_blank_event_id_falls_back_to_the_content_id() -> None:
    assert Event.from_record(record(event_id="  ")).event_id == Event.from_record(record()).event_id


# --- attributes and sources -------------------------------------------------------------------------------


def test_extra_fields_are_kept_as_attributes_and_blank_ones_dropped() -> None:
    event = Event.from_record(
        record(store="Leeds", rating=4, tags=["gift"], empty="", spaces="   ", nothing=None, zero=0, no=False)
    )
    assert event.attributes == {"store": "Leeds", "rating": 4, "tags": ["gift"], "zero": 0, "no": False}


def test_reserved_fields_never_become_attributes() -> None:
    event = Event.from_record(record(event_id="e1", timestamp="2011-03-04", source="crm", kind="call"))
    assert event.attributes == {}
    assert event.kind == "call"


def test_default_source_is_used_only_when_the_record_has_none() -> None:
    assert Event.from_record(record(), default_source="crm").source == "crm"
    assert Event.from_record(record(source="  "), default_source="crm").source == "crm"
    assert Event.from_record(record(source="review"), default_source="crm").source == "review"
    assert Event.from_record(record()).source == "unknown"


def test_source_is_lower_cased() -> None:
    assert Event.from_record(record(source="Purchase")).source == "purchase"
    assert Event.from_record(record(), default_source="SURVEY").source == "survey"


# --- round trip --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rec",
    [
        record(),
        record(
            customer_id=17850.0,
            source="Purchase",
            timestamp="2011-03-04 10:15:00",
            kind="order",
            invoice="536365",
            total=22.5,
            products=["mug", "plate"],
        ),
        record(timestamp="2011-03-04T10:15:00.123456+05:30", event_id="given-id"),
        record(timestamp=1299233700.25, note=""),
    ],
)
def test_to_record_round_trips(rec: dict[str, object]) -> None:
    event = Event.from_record(rec, default_source="crm")
    assert Event.from_record(event.to_record()) == event
    # ...and through JSON text, which is how records are written to files.
    assert Event.from_record(json.loads(json.dumps(event.to_record()))) == event


def test_to_record_is_plain_json_with_only_set_optional_fields() -> None:
    event = Event.from_record(record(store="Leeds"))
    out = event.to_record()
    assert set(out) == {"event_id", "customer_id", "text", "source", "store"}
    json.dumps(out)
    dated = Event.from_record(
        record(timestamp=datetime(2011, 3, 4, 10, 15, tzinfo=timezone(timedelta(hours=2))))
    )
    assert dated.to_record()["timestamp"] == "2011-03-04T10:15:00+02:00"
