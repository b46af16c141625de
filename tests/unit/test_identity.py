"""Identity resolution: identifiers normalised, stitched into people, matched to the twins already stored."""

from __future__ import annotations

import pytest

from twinchat.domain.events import EventError
from twinchat.domain.identity import IdentityGraph, masked, normalize


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("email", "  Ann.Lee@Example.COM ", "ann.lee@example.com"),
        ("phone", "+44 (20) 7946-0958", "+442079460958"),
        ("phone", "0044 20 7946 0958", "+442079460958"),
        ("customer_id", "17850.0", "17850"),
        ("customer_id", " C-100 ", "C-100"),
        ("loyalty_card", "LC 991", "LC 991"),
    ],
)
def test_normalize(kind: str, value: str, expected: str) -> None:
    assert normalize(kind, value) == expected


def test_national_phone_numbers_take_the_country_code() -> None:
    assert normalize("phone", "020 7946 0958", country_code="44") == "+442079460958"
    assert normalize("phone", "020 7946 0958") == "02079460958"  # no country given: kept as written


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        ("email", "carol@@bad", "not an email address"),
        ("email", "no-at-sign.example.com", "not an email address"),
        ("phone", "12 34", "not a phone number"),
        ("phone", "call me", "not a phone number"),
        ("customer_id", "   ", "is empty"),
        ("customer_id", "a\x00b", "NUL"),
        ("Bad Kind", "x", "identifier kind"),
    ],
)
def test_bad_identifiers_name_the_kind(kind: str, value: str, reason: str) -> None:
    with pytest.raises(EventError) as info:
        normalize(kind, value)
    assert info.value.field == kind and reason in info.value.reason


def test_records_sharing_any_identifier_are_one_person() -> None:
    graph = IdentityGraph()
    graph.link([("customer_id", "17850"), ("email", "ann@example.com")])
    graph.link([("email", "ann@example.com"), ("phone", "+442079460958")])
    graph.link([("phone", "+442079460958")])
    graph.link([("email", "bob@example.org")])
    resolution = graph.resolve(known={})
    assert {resolution.twin_for(i) for i in [("customer_id", "17850"), ("phone", "+442079460958")]} == {
        "17850"
    }
    bob = resolution.twin_for(("email", "bob@example.org"))
    # Without a customer id the twin id is a digest: an email address never becomes a twin id.
    assert bob is not None and bob.startswith("cust-") and "bob" not in bob
    assert resolution.new_twins == {"17850", bob}
    assert resolution.identifiers_of()["17850"] == [
        ("customer_id", "17850"),
        ("email", "ann@example.com"),
        ("phone", "+442079460958"),
    ]


def test_a_group_joins_the_twin_that_already_holds_one_of_its_identifiers() -> None:
    graph = IdentityGraph()
    graph.link([("email", "ann@example.com"), ("phone", "+442079460958")])
    resolution = graph.resolve(known={("phone", "+442079460958"): "C-1"})
    assert resolution.twin_for(("email", "ann@example.com")) == "C-1"
    assert resolution.new_twins == set()


def test_identifiers_of_two_stored_twins_are_a_conflict_not_a_merge() -> None:
    graph = IdentityGraph()
    graph.link([("customer_id", "1"), ("email", "ann@example.com")])
    graph.link([("customer_id", "3")])
    resolution = graph.resolve(known={("customer_id", "1"): "1", ("email", "ann@example.com"): "2"})
    assert resolution.conflicts[("customer_id", "1")] == ["1", "2"]
    assert resolution.twin_for(("customer_id", "1")) is None
    assert resolution.twin_for(("customer_id", "3")) == "3"  # other people are unaffected


def test_customer_ids_take_the_import_prefix() -> None:
    graph = IdentityGraph()
    graph.link([("customer_id", "0019")])
    assert (
        graph.resolve(known={}, customer_twin=lambda c: f"gss-{c}").twin_for(("customer_id", "0019"))
        == "gss-0019"
    )


def test_masked() -> None:
    assert masked("email", "ann.lee@example.com") == "a***@example.com"
    assert masked("phone", "+442079460958") == "+44*******958"
    assert masked("customer_id", "17850") == "17850"
