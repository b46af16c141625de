"""Structured answers: parsing questions, reading survey events, and the pooled choice model on known panels."""

from __future__ import annotations

import math
import random

import pytest

from twinchat.domain.events import Event
from twinchat.domain.survey import (
    AnswerMatrix,
    ChoiceModel,
    Question,
    QuestionError,
    SurveyAnswer,
    Weights,
    question_key,
    survey_answer_of,
)

YES_NO = ("Yes", "No")


def answers_for(table: dict[str, dict[str, str]]) -> list[SurveyAnswer]:
    return [
        SurveyAnswer(twin, key, f"Question {key}?", answer, f"{twin}-{key}")
        for twin, row in table.items()
        for key, answer in row.items()
    ]


def correlated_panel(n: int = 60, seed: int = 0) -> dict[str, dict[str, str]]:
    """Twins whose answer to 'target' equals their answer to 'signal'; 'noise' is random."""
    rng = random.Random(seed)
    table = {}
    for i in range(n):
        value = "Yes" if i % 3 else "No"  # Yes is the majority (2/3)
        table[f"t{i}"] = {"signal": value, "target": value, "noise": rng.choice(YES_NO)}
    return table


# --- questions ---------------------------------------------------------------------------------------


def test_question_from_dict_accepts_choice_and_free_questions() -> None:
    assert Question.from_dict({"id": "q1", "text": "Tea?", "options": ["Yes", " No "]}).options == (
        "Yes",
        "No",
    )
    assert not Question.from_dict({"id": 7, "text": "Why?"}).is_choice


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"text": "Tea?"}, "id"),
        ({"id": "q", "text": " "}, "text"),
        ({"id": "q", "text": "Tea?", "options": "Yes,No"}, "options"),
        ({"id": "q", "text": "Tea?", "options": ["Yes"]}, "options"),
        ({"id": "q", "text": "Tea?", "options": ["Yes", "yes"]}, "options"),
        (["q", "Tea?"], "question"),
    ],
)
def test_bad_questions_name_the_index_and_field(data: object, field: str) -> None:
    with pytest.raises(QuestionError) as info:
        Question.from_dict(data, index=3)
    assert info.value.field == field and info.value.index == 3
    assert str(info.value).startswith("question 3: ")


# --- reading survey answers from events ------------------------------------------------------------------


def test_survey_answers_come_from_attributes_or_from_q_a_text() -> None:
    structured = Event.from_record(
        {
            "customer_id": "c1",
            "text": "x",
            "source": "survey",
            "question_id": "gss:cappun",
            "question": "Death penalty?",
            "answer": "Favor",
        }
    )
    plain = Event.from_record(
        {"customer_id": "c1", "text": "Q: Do you  like tea? A: Very much", "source": "survey"}
    )
    other = Event.from_record({"customer_id": "c1", "text": "Q: Tea? A: Yes", "source": "review"})
    first, second = survey_answer_of(structured), survey_answer_of(plain)
    assert first is not None and (first.key, first.answer) == ("gss:cappun", "Favor")
    assert second is not None and (second.question, second.answer) == ("Do you  like tea?", "Very much")
    assert second.key == question_key(None, "do you like TEA?")
    assert survey_answer_of(other) is None


def test_the_matrix_keeps_each_twins_latest_answer() -> None:
    old = Event.from_record(
        {"customer_id": "c", "text": "Q: Tea? A: No", "source": "survey", "timestamp": "2006-01-01"}
    )
    new = Event.from_record(
        {"customer_id": "c", "text": "Q: Tea? A: Yes", "source": "survey", "timestamp": "2008-01-01"}
    )
    matrix = AnswerMatrix([survey_answer_of(new), survey_answer_of(old)])  # type: ignore[list-item]
    assert matrix.by_twin["c"][question_key(None, "Tea?")].answer == "Yes"


# --- the choice model -------------------------------------------------------------------------------------


def test_a_twin_with_nothing_to_go_on_gets_the_panel_prior() -> None:
    table = correlated_panel()
    table["newcomer"] = {}
    model = ChoiceModel(AnswerMatrix(answers_for(table)))
    answer = model.choose("newcomer", Question("target", "Question target?", YES_NO))
    prior = {"Yes": (40 + 1) / (60 + 2), "No": (20 + 1) / (60 + 2)}
    assert answer.evidence == "panel_only" and answer.citations == []
    assert answer.distribution == pytest.approx(prior)
    assert answer.answer == "Yes"
    assert "says nothing" in answer.reason


def test_twins_that_answered_alike_elsewhere_decide_the_answer() -> None:
    table = correlated_panel()
    table["me"] = {"signal": "No", "noise": "Yes"}  # the minority answer on the informative question
    question = Question("target", "Question target?", YES_NO)
    # Untempered, one perfectly informative question is decisive...
    model = ChoiceModel(AnswerMatrix(answers_for(table)), Weights(temper=1.0))
    answer = model.choose("me", question)
    assert answer.answer == "No" and answer.distribution["No"] > 0.8
    # ...and the calibrated (tempered) default still turns the majority's prior (0.34 for No) into No.
    calibrated = ChoiceModel(AnswerMatrix(answers_for(table))).choose("me", question)
    assert calibrated.answer == "No" and calibrated.distribution["No"] > 0.5
    assert answer.evidence == "similar_twins"
    assert answer.citations[0].event_id == "me-signal"  # the most informative related answer comes first
    assert "signal" in answer.reason or "related questions" in answer.reason


def test_an_uninformative_question_barely_moves_the_prior() -> None:
    rng = random.Random(1)
    table = {f"t{i}": {"noise": rng.choice(YES_NO), "target": "Yes" if i % 3 else "No"} for i in range(90)}
    table["me"] = {"noise": "No"}
    model = ChoiceModel(AnswerMatrix(answers_for(table)))
    answer = model.choose("me", Question("target", "Question target?", YES_NO))
    assert answer.answer == "Yes"
    assert abs(answer.distribution["Yes"] - 61 / 92) < 0.1


def test_the_twins_own_earlier_answer_weighs_most() -> None:
    table = correlated_panel()
    table["me"] = {"target": "No"}
    answer = ChoiceModel(AnswerMatrix(answers_for(table))).choose("me", Question("target", "Q?", YES_NO))
    assert answer.evidence == "own_answer" and answer.answer == "No"
    assert answer.citations[0].event_id == "me-target"


def test_distribution_and_weights_are_proper_and_shown() -> None:
    table = correlated_panel()
    table["me"] = {"signal": "Yes", "target": "Yes"}
    answer = ChoiceModel(AnswerMatrix(answers_for(table))).choose("me", Question("target", "Q?", YES_NO))
    assert math.isclose(sum(answer.distribution.values()), 1.0)
    assert math.isclose(sum(p.weight for p in answer.parts), 1.0)
    assert {p.name for p in answer.parts} == {"panel", "own", "similar"}
    for part in answer.parts:
        assert math.isclose(sum(part.distribution.values()), 1.0)
    as_dict = answer.to_dict()
    assert as_dict["simulated"] is True and set(as_dict["distribution"]) == set(YES_NO)


def test_llm_scores_join_the_pool_with_their_weight() -> None:
    table = correlated_panel()
    table["me"] = {}
    model = ChoiceModel(AnswerMatrix(answers_for(table)), Weights(panel=0.5, llm=0.5))
    answer = model.choose("me", Question("target", "Q?", YES_NO), llm_scores={"Yes": -5.0, "No": -0.1})
    llm = next(p for p in answer.parts if p.name == "llm")
    assert llm.weight == pytest.approx(0.5) and llm.distribution["No"] > 0.99
    assert answer.answer == "No"


def test_options_match_stored_answers_regardless_of_case_and_unknown_keys_fall_back() -> None:
    table = {f"t{i}": {"target": "yes"} for i in range(5)}
    model = ChoiceModel(AnswerMatrix(answers_for(table)))
    assert model.choose("x", Question("target", "Q?", YES_NO)).distribution["Yes"] == pytest.approx(6 / 7)
    unknown = model.choose("x", Question("never-asked", "Something new?", YES_NO))
    assert unknown.distribution == {"Yes": 0.5, "No": 0.5} and unknown.evidence == "panel_only"


def test_free_questions_are_refused_by_the_choice_model() -> None:
    with pytest.raises(ValueError, match="no options"):
        ChoiceModel(AnswerMatrix([])).choose("x", Question("q", "Why?"))


def test_numeric_questions_answer_with_the_expected_value_of_similar_twins() -> None:
    table = {
        f"t{i}": {"signal": "Big" if i % 2 else "Small", "children": "4" if i % 2 else "0"} for i in range(40)
    }
    table["me"] = {"signal": "Big"}
    model = ChoiceModel(AnswerMatrix(answers_for(table)), Weights(temper=1.0))
    question = Question.from_dict({"id": "children", "text": "How many children?", "type": "numeric"})
    answer = model.estimate("me", question)
    assert answer is not None and set(answer.distribution) == {"0", "4"}
    expected = sum(float(v) * p for v, p in answer.distribution.items())
    assert float(answer.answer) == pytest.approx(expected, abs=0.01) and float(answer.answer) > 3
    assert model.estimate("me", Question("never", "Age?", numeric=True)) is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"id": "q", "text": "t", "type": "numeric", "options": ["1", "2"]}, "options"),
        ({"id": "q", "text": "t", "type": "likert"}, "options"),
        ({"id": "q", "text": "t", "type": "rank"}, "type"),
    ],
)
def test_question_types_are_checked(data: dict, field: str) -> None:
    with pytest.raises(QuestionError) as info:
        Question.from_dict(data)
    assert info.value.field == field


def test_a_corrected_answer_is_the_customers_word_and_outweighs_similar_twins() -> None:
    answers = []
    for i in range(30):
        status, happy = ("Married", "Very Happy") if i < 20 else ("Divorced", "Not Too Happy")
        answers += [
            SurveyAnswer(f"t{i}", "gss:marital", "Are you married?", status, f"e{i}m"),
            SurveyAnswer(f"t{i}", "gss:hapmar", "How happy is your marriage?", happy, f"e{i}h"),
        ]
    answers += [
        SurveyAnswer("c", "gss:marital", "Are you married?", "Divorced", "corr_1"),
        SurveyAnswer("c", "gss:hapmar", "How happy is your marriage?", "Very Happy", "c-w2-hapmar"),
    ]
    question = Question("gss:marital", "Are you married?", ("Married", "Divorced"))
    answer = ChoiceModel(AnswerMatrix(answers)).choose("c", question)
    assert (answer.answer, answer.evidence) == ("Divorced", "correction")
    assert answer.distribution["Divorced"] == pytest.approx(0.95) and sum(answer.distribution.values()) == 1.0
    assert [c.event_id for c in answer.citations] == ["corr_1"] and "corrected" in answer.reason
    # The same answer given in a survey (not a correction) is pooled with the twins like it.
    answers[-2] = SurveyAnswer("c", "gss:marital", "Are you married?", "Divorced", "c-w2-marital")
    assert ChoiceModel(AnswerMatrix(answers)).choose("c", question).evidence == "own_answer"
