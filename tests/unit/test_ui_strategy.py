"""The studio's strategy-test tab on fakes: two variants tested on a panel, rates, chart and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from tests.support.api import history_records
from twinchat.services import TwinService
from twinchat.testing import fake_service
from ui.studio import Studio
from ui.studio_page import build_studio

HISTORY = [
    ("ann", "Order 1: CAKE STAND 3 TIER", "purchase"),
    ("ann", "Order 2: CAKE STAND PINK", "purchase"),
    ("bob", "Order 3: GARDEN GLOVES", "purchase"),
    ("cat", "Order 4: RED MUG", "purchase"),
]
FORM = ("spring", "email", "20% off cake stands", 8.5, "Free delivery on cake stands", None, ["orders"])


@pytest.fixture(autouse=True)
def _own_gradio_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))


@pytest.fixture
def service(tmp_path: Path) -> TwinService:
    service = fake_service(tmp_path, default_consent=["research", "marketing"])
    service.ingest_records(history_records(HISTORY), panel="pilot")
    service.set_consent("cat", "marketing", False)
    return service


def test_a_product_key_tests_two_variants_and_sees_rates_chart_and_refusals(service: TwinService) -> None:
    studio = Studio(service)
    product = service.create_key("product")[1]
    _, welcome, *_ = studio.sign_in(product)
    assert "product key" in welcome
    summary, chart, rates, results = studio.simulate(product, "pilot", *FORM)
    assert "2 twins answered, 1 refused" in summary and "twin cat" in summary and "B - A:" in summary
    assert Path(chart).read_bytes()[:4] == b"\x89PNG"
    assert list(rates["breakdown"].unique()) == ["all twins", "orders"] and set(rates["variant"]) == {
        "A",
        "B",
    }
    document = json.loads(Path(results).read_text())
    assert document["simulated"] is True and document["campaign"]["variants"]["B"] == {
        "text": "Free delivery on cake stands"
    }
    assert [e.action for e in service.audit(twin_id="ann")][-1] == "simulate"
    with pytest.raises(gr.Error, match="cannot use this page"):
        studio.find(product, "", None)  # research tabs stay for researcher and admin keys


def test_a_researcher_key_may_not_test_strategies_and_bad_input_is_a_message(service: TwinService) -> None:
    studio = Studio(service)
    researcher = service.create_key("researcher")[1]
    with pytest.raises(gr.Error, match="not marketing"):
        studio.simulate(researcher, "pilot", *FORM)
    admin = service.create_key("admin")[1]
    with pytest.raises(gr.Error, match="the form: variants.A.text: is required"):
        studio.simulate(admin, "pilot", "spring", "email", "", None, "b", None, [])


def test_the_studio_page_has_the_strategy_tab(service: TwinService) -> None:
    page = build_studio(service)
    ids = {getattr(block, "elem_id", None) for block in page.blocks.values()}
    assert {"strategy-run", "strategy-chart", "strategy-rates", "strategy-a", "strategy-b"} <= ids
