"""Retrieval ranking: BM25, recency, importance, the relevance gate, the weights. Real pieces: integration."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from twinchat.config import Settings
from twinchat.domain.events import Event
from twinchat.domain.models import Memory
from twinchat.domain.retrieval import (
    DEFAULT_IMPORTANCE,
    LexicalIndex,
    LexicalIndexCache,
    RetrievalPolicy,
    importance,
    recency,
    tokenize,
)
from twinchat.services import TwinService
from twinchat.testing import FakeChatModel, fake_service

T0 = datetime(2011, 1, 1, tzinfo=UTC)


def ev(
    event_id: str,
    text: str,
    *,
    days: float | None = 0,
    source: str = "purchase",
    kind: str | None = None,
    **attributes: object,
) -> Event:
    timestamp = None if days is None else T0 + timedelta(days=days)
    return Event("c1", text, event_id, timestamp, source, kind, dict(attributes))


# --- BM25 --------------------------------------------------------------------------------------------------


def test_tokenize_lowercases_drops_stop_words_and_folds_plurals() -> None:
    words = tokenize("Did you EVER buy the Cake Stands, order 85123A?")
    assert words == ["buy", "cake", "stand", "order", "85123a"]
    assert tokenize("What do you think of it?") == ["think"]
    assert tokenize("berries glass bus") == ["berry", "glass", "bus"]


def test_bm25_scores_match_the_okapi_formula_on_a_tiny_corpus() -> None:
    texts = ["red teapot", "red mug, red mug", "blue teapot with a chipped lid"]
    index = LexicalIndex([ev(f"e{i}", text) for i, text in enumerate(texts, start=1)])
    # Lengths without stop words: 2, 4, 4 (mean 10/3); N = 3; "red" in 2 events, "mug" in 1.
    idf_red, idf_mug = math.log(1 + 1.5 / 2.5), math.log(1 + 2.5 / 1.5)
    k1, b, mean = 1.2, 0.75, 10 / 3
    e1 = idf_red * 1 * (k1 + 1) / (1 + k1 * (1 - b + b * 2 / mean))
    e2 = (idf_red + idf_mug) * 2 * (k1 + 1) / (2 + k1 * (1 - b + b * 4 / mean))

    matches = index.match("Red mugs?")

    assert list(matches) == ["e2", "e1"]  # best first; e3 shares no word
    assert matches["e1"].bm25 == pytest.approx(e1)
    assert matches["e2"].bm25 == pytest.approx(e2)
    assert matches["e2"].lexical == 1.0 and matches["e1"].lexical == pytest.approx(e1 / e2)
    assert matches["e2"].share == 1.0 and matches["e1"].share == pytest.approx(idf_red / (idf_red + idf_mug))


def test_bm25_a_rare_word_outweighs_a_common_one() -> None:
    texts = ["teapot order", "mug order", "chipped teapot lid", "spoon order"]
    index = LexicalIndex([ev(f"e{i}", text) for i, text in enumerate(texts, start=1)])
    matches = index.match("chipped order")
    assert list(matches) == ["e3", "e1", "e2", "e4"]  # the three "order" events tie, in history order
    assert matches["e3"].bm25 > 2 * matches["e1"].bm25


def test_bm25_a_question_matched_only_by_a_word_every_event_shares_scores_low() -> None:
    index = LexicalIndex([ev(f"e{i}", f"Order {i} of mugs and plates number {i}") for i in range(20)])
    matches = index.match("Did you ever cancel an order?")
    assert len(matches) == 20
    assert max(m.lexical for m in matches.values()) < 0.05


# --- recency -----------------------------------------------------------------------------------------------


def test_recency_halves_every_half_life_from_the_newest_event() -> None:
    newest = T0 + timedelta(days=730)
    assert recency(newest, newest, half_life_days=365) == 1.0
    assert recency(newest - timedelta(days=365), newest, half_life_days=365) == pytest.approx(0.5)
    assert recency(newest - timedelta(days=730), newest, half_life_days=365) == pytest.approx(0.25)
    assert recency(newest - timedelta(days=30), newest, half_life_days=30) == pytest.approx(0.5)
    assert recency(None, newest, half_life_days=365) == 0.0  # undated: no claim to be recent
    assert recency(newest + timedelta(days=3), newest, half_life_days=365) == 1.0
    assert recency(datetime(2011, 1, 1), T0, half_life_days=365) == 1.0  # naive means UTC


def test_an_old_history_is_measured_from_its_own_newest_event_not_from_now() -> None:
    event = ev("e1", "teapot", days=0)
    ranked = RetrievalPolicy().rank("teapot", [Memory(event, 0.9)], [event])
    assert ranked[0].recency == 1.0  # 2011, yet as recent as the twin knows


# --- importance --------------------------------------------------------------------------------------------


def test_importance_by_source_follows_the_documented_order() -> None:
    by_source = {
        s: importance(ev("e", "x", source=s))
        for s in ("correction", "support", "review", "survey", "crm", "purchase", "social", "web")
    }
    assert by_source["correction"] == 1.0
    assert by_source["support"] == by_source["review"] == by_source["survey"]
    order = ["survey", "crm", "purchase", "social", "web"]
    assert [by_source[s] for s in order] == sorted((by_source[s] for s in order), reverse=True)
    assert len({by_source[s] for s in order}) == len(order)
    assert importance(ev("e", "x", source="newsletter")) == DEFAULT_IMPORTANCE


def test_importance_kind_raises_turning_points() -> None:
    order = importance(ev("e", "x", kind="order"))
    assert order == importance(ev("e", "x"))
    for kind in ("cancellation", "complaint", "refund", "order_cancelled", "Return"):
        assert importance(ev("e", "x", kind=kind)) > order, kind
    assert importance(ev("e", "x", source="correction", kind="complaint")) == 1.0  # clamped


def test_an_explicit_importance_attribute_wins_and_is_clamped() -> None:
    assert importance(ev("e", "x", source="web", importance=0.9)) == 0.9
    assert importance(ev("e", "x", source="correction", importance="0.2")) == 0.2  # CSV values are strings
    assert importance(ev("e", "x", importance=7)) == 1.0
    assert importance(ev("e", "x", importance=-1)) == 0.0
    assert importance(ev("e", "x", importance=True)) == importance(ev("e", "x"))  # not a number
    assert importance(ev("e", "x", importance="high")) == importance(ev("e", "x"))


# --- ranking -----------------------------------------------------------------------------------------------


def test_a_newer_equally_relevant_event_outranks_an_older_one() -> None:
    old, new = ev("old", "Bought a blue teapot", days=0), ev("new", "Bought a blue teapot", days=200)
    ranked = RetrievalPolicy().rank("blue teapot?", [Memory(old, 0.7), Memory(new, 0.7)], [old, new])
    assert [s.event.event_id for s in ranked] == ["new", "old"]
    assert ranked[0].dense == ranked[1].dense and ranked[0].lexical == ranked[1].lexical


def test_an_irrelevant_event_is_never_evidence_however_recent_or_important() -> None:
    relevant = ev("teapot", "Bought a blue teapot", days=0, source="web")
    loud = ev("loud", "Complained the parcel was late", days=3000, source="correction", kind="complaint")
    policy = RetrievalPolicy(w_dense=0.01, w_lexical=0.01, w_recency=10, w_importance=10)
    ranked = policy.rank("teapot?", [Memory(relevant, 0.6), Memory(loud, 0.1)], [relevant, loud])
    assert [s.event.event_id for s in ranked] == ["teapot"]
    assert policy.rank("Which football club do you support?", [Memory(loud, 0.1)], [relevant, loud]) == []


def test_a_strong_lexical_match_is_evidence_even_when_the_embedding_misses_it() -> None:
    events = [ev(f"o{i}", f"Order 5366{i:02d}: 6 x tea towels", days=i) for i in range(30)]
    dense = [Memory(e, 0.1) for e in events]  # an embedding that sees no difference, all below 0.25
    ranked = RetrievalPolicy().rank("536617", dense, events)
    assert [s.event.event_id for s in ranked] == ["o17"]
    assert ranked[0].relevant_by == "lexical" and ranked[0].lexical == 1.0
    assert ranked[0].memory.score == 0.1  # the citation's score stays the cosine


def test_a_lexical_match_alone_needs_most_of_the_question() -> None:
    # "support" is rare in this history, but the question is about football: one word of two is not enough.
    events = [ev("s", "Support ticket: lid chipped", source="support"), ev("m", "Mugs"), ev("j", "Jug")]
    assert RetrievalPolicy().rank("Do you support Arsenal?", [], events) == []


def test_the_score_is_the_weighted_sum_of_the_components_it_reports() -> None:
    events = [ev("a", "red teapot", source="review"), ev("b", "red mug red mug", days=400, kind="refund")]
    dense = [Memory(events[0], 0.8), Memory(events[1], -0.3)]
    for policy in (RetrievalPolicy(), RetrievalPolicy(w_dense=1, w_lexical=2, w_recency=3, w_importance=4)):
        for s in policy.rank("red teapot", dense, events):
            expected = (
                policy.w_dense * s.dense
                + policy.w_lexical * s.lexical
                + policy.w_recency * s.recency
                + policy.w_importance * s.importance
            )
            assert s.score == pytest.approx(expected)
            assert s.dense == max(s.memory.score, 0.0)
    only = {"w_dense": 0.0, "w_lexical": 0.0, "w_recency": 0.0, "w_importance": 0.0}
    for weight, component in [
        ("w_dense", "dense"),
        ("w_lexical", "lexical"),
        ("w_recency", "recency"),
        ("w_importance", "importance"),
    ]:
        for s in RetrievalPolicy(**{**only, weight: 0.5}).rank("red teapot", dense, events):
            assert s.score == pytest.approx(0.5 * getattr(s, component)), weight


def test_the_weights_documented_in_the_policy_are_its_defaults_and_the_settings_defaults() -> None:
    documented = dict(re.findall(r"^\s+(\w+): ([\d.]+)\s", RetrievalPolicy.__doc__ or "", re.MULTILINE))
    defaults = RetrievalPolicy()
    assert set(documented) == set(RetrievalPolicy.__dataclass_fields__)
    assert {name: float(value) for name, value in documented.items()} == {
        name: float(getattr(defaults, name)) for name in documented
    }
    settings = Settings()
    assert (
        RetrievalPolicy(
            w_dense=settings.weight_dense,
            w_lexical=settings.weight_lexical,
            w_recency=settings.weight_recency,
            w_importance=settings.weight_importance,
            half_life_days=settings.recency_half_life_days,
            candidates=settings.retrieval_candidates,
            k=settings.top_k,
            min_relevance=settings.min_relevance,
            min_lexical_share=settings.min_lexical_share,
        )
        == defaults
    )


def test_rank_returns_at_most_k_best_first() -> None:
    events = [ev(f"e{i}", "blue teapot", days=i) for i in range(10)]
    ranked = RetrievalPolicy(k=3).rank("teapot", [Memory(e, 0.5) for e in events], events)
    assert [s.event.event_id for s in ranked] == ["e9", "e8", "e7"]
    assert ranked[0].to_dict()["relevant_by"] == "both"


def test_invalid_policies_name_the_field() -> None:
    with pytest.raises(ValueError, match="w_recency"):
        RetrievalPolicy(w_recency=-1)
    with pytest.raises(ValueError, match="half_life_days"):
        RetrievalPolicy(half_life_days=0)


def test_retrieve_widens_the_dense_search_only_for_a_lexical_match_it_missed() -> None:
    events = [ev(f"o{i}", f"Order 5366{i:02d}: 6 x tea towels", days=i) for i in range(40)]
    index = LexicalIndex(events)
    asked: list[int] = []

    def search(k: int) -> list[Memory]:
        asked.append(k)
        return [Memory(e, 0.5 - i / 100) for i, e in enumerate(events)][:k]

    policy = RetrievalPolicy(candidates=10)
    ranked = policy.retrieve("Was 536631 an order of towels?", search=search, index=index)
    assert asked == [10, 40]
    assert ranked[0].event.event_id == "o31" and ranked[0].memory.score == pytest.approx(0.19)
    asked.clear()
    RetrievalPolicy(candidates=10).retrieve("Tea towels?", search=search, index=index)  # every event matches
    assert asked == [10, 40]
    asked.clear()
    RetrievalPolicy(candidates=10).retrieve("What about 536603?", search=search, index=index)  # dense has it
    assert asked == [10]


def test_the_index_cache_rebuilds_when_the_count_changes_and_forgets_old_twins() -> None:
    cache = LexicalIndexCache(max_twins=2)
    loads: list[str] = []

    def load(twin: str, n: int):
        return lambda: loads.append(twin) or [ev(f"{twin}{i}", "x") for i in range(n)]

    first = cache.get("a", version=1, load=load("a", 1))
    assert cache.get("a", version=1, load=load("a", 1)) is first
    assert cache.get("a", version=2, load=load("a", 2)).size == 2
    cache.get("b", version=1, load=load("b", 1))
    cache.get("c", version=1, load=load("c", 1))  # evicts "a", the least recently used
    cache.get("a", version=2, load=load("a", 2))
    assert loads == ["a", "a", "b", "c", "a"]


# --- in the service ----------------------------------------------------------------------------------------


@pytest.fixture
def chat() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def service(tmp_path: Path, chat: FakeChatModel) -> TwinService:
    return fake_service(tmp_path, chat_model=chat, min_relevance=0.2)


def ingest(service: TwinService, path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert service.ingest_files([path], progress=False).exit_code == 0


def test_ask_shows_the_newer_of_two_equally_relevant_events_first(
    service: TwinService, chat: FakeChatModel, tmp_path: Path
) -> None:
    ingest(
        service,
        tmp_path / "h.jsonl",
        [
            {
                "customer_id": "ann",
                "text": "Bought a blue teapot",
                "timestamp": "2010-01-05",
                "event_id": "old",
            },
            {
                "customer_id": "ann",
                "text": "Bought a blue teapot",
                "timestamp": "2011-06-05",
                "event_id": "new",
            },
        ],
    )
    chat.enqueue("Yes [E1].")
    answer = service.ask("ann", "Did you buy a blue teapot?")
    assert [c.event_id for c in answer.citations] == ["new"]
    assert "2011-06-05" in chat.calls[-1][-1].content.split("[E1]")[1].splitlines()[0]


def test_events_ingested_after_a_question_are_found_by_the_next_one(
    service: TwinService, tmp_path: Path
) -> None:
    ingest(service, tmp_path / "a.jsonl", [{"customer_id": "ann", "text": "Bought a blue teapot"}])
    assert service.retrieve("ann", "ZX81?") == []
    later = {"customer_id": "ann", "text": "Bought a ZX81 computer", "event_id": "zx"}
    ingest(service, tmp_path / "b.jsonl", [later])
    assert [s.event.event_id for s in service.retrieve("ann", "ZX81?")] == ["zx"]
