"""Which survey answer a correction states, and which memories it supersedes: plain Python, no models."""

from __future__ import annotations

import pytest

from twinchat.domain.corrections import looks_like_correction, superseded_by, survey_fix
from twinchat.domain.events import Event
from twinchat.domain.models import Memory
from twinchat.domain.retrieval import ScoredMemory

QUESTIONS = {
    "relig": ("What is your religious preference?", {"Protestant", "Catholic", "Jewish", "None"}),
    "marital": (
        "What is your marital status?",
        {"Married", "Widowed", "Divorced", "Separated", "Never Married"},
    ),
    "happy": ("How happy are you these days?", {"Very Happy", "Pretty Happy", "Not Too Happy"}),
    "grass": ("Should marijuana be made legal?", {"Legal", "Not Legal"}),
}


def near(_: str, questions: list[str]) -> list[float]:
    return [0.6] * len(questions)


@pytest.mark.parametrize(
    ("statement", "key", "answer"),
    [
        ("My religion is Catholic now, not Protestant.", "relig", "Catholic"),
        ("I used to be Protestant but now I'm Catholic", "relig", "Catholic"),
        ("My religion is none now, not protestant.", "relig", "None"),
        ("That's not right: I am widowed, not single and never married.", "marital", "Widowed"),
        ("I am divorced, no longer married", "marital", "Divorced"),
        ("Actually I was never married", "marital", "Never Married"),
        ("These days I am very happy, not pretty happy.", "happy", "Very Happy"),
        ("Actually, I am not too happy these days.", "happy", "Not Too Happy"),
        ("I think it should be not legal", "grass", "Not Legal"),
    ],
)
def test_the_stated_label_wins_over_the_replaced_one(statement: str, key: str, answer: str) -> None:
    fix = survey_fix(statement, QUESTIONS, {key: ["old-event"]}, near)
    assert fix is not None and (fix.key, fix.answer, fix.replaces) == (key, answer, ["old-event"])


def test_a_statement_naming_no_label_or_only_the_replaced_one_answers_nothing() -> None:
    assert survey_fix("I moved to Lyon", QUESTIONS, {}, near) is None
    assert survey_fix("I am no longer Catholic", QUESTIONS, {}, near) is None


def test_the_question_must_be_near_in_meaning() -> None:
    far = lambda _, qs: [0.2] * len(qs)  # noqa: E731
    assert survey_fix("I bought a Catholic prayer book", QUESTIONS, {}, far) is None
    # One question named: a lower bar (0.3); two or more: the usual 0.45, and the nearest wins.
    assert (
        survey_fix("Keeping it simple: Catholic", QUESTIONS, {}, lambda _, qs: [0.35] * len(qs)) is not None
    )
    assert survey_fix("Catholic and married", QUESTIONS, {}, lambda _, qs: [0.35] * len(qs)) is None
    both = survey_fix("Catholic and married", QUESTIONS, {}, lambda _, qs: [0.5, 0.7][: len(qs)])
    assert both is not None and both.key == "marital"


@pytest.mark.parametrize(
    ("message", "correction"),
    [
        ("Actually, I moved to Lyon", True),
        ("I no longer buy tea", True),
        ("Correction: my order was 12 mugs", True),
        ("What do you usually buy?", False),
        ("Do you actually like tea?", False),
    ],
)
def test_corrections_in_conversation_are_recognised_by_how_they_start(message: str, correction: bool) -> None:
    assert looks_like_correction(message) is correction


def scored(text: str, dense: float) -> ScoredMemory:
    event = Event.from_record({"customer_id": "c", "text": text})
    return ScoredMemory(Memory(event, dense), dense, dense, 0.0, 0.0, 0.0, 0.0, "dense")


def test_a_memory_is_superseded_when_near_in_meaning_and_about_the_same_subject() -> None:
    lives = scored("I live in Paris", 0.7)
    teapot = scored("Bought a red teapot", 0.7)  # near by a fluke, but shares no word: untouched
    far = scored("I live with my cat", 0.2)
    assert superseded_by("I no longer live in Paris", [far, teapot, lives]) == [lives]


def test_a_shared_order_number_is_enough_however_long_the_order() -> None:
    order = scored("Invoice 565995: 24 jumbo bags, 12 doilies, 6 tins, " + "and more items " * 20, 0.2)
    other = scored("Invoice 565996: 3 mugs", 0.2)
    assert superseded_by("Correction: order 565995 was not mine", [other, order]) == [order]


def test_a_capable_judge_can_veto_a_candidate() -> None:
    lives = scored("I live in Paris", 0.7)
    assert superseded_by("I no longer live in Paris", [lives], judge=lambda old, new: False) == []
    assert superseded_by("I no longer live in Paris", [lives], judge=lambda old, new: None) == [lives]
