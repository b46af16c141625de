"""The customer in control on the real pieces: MiniLM, Chroma on disk, SmolLM2, the CLI and real HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import PYTHON, ROOT, free_port, run_cli, stop, wait_http
from tests.integration.test_cli_e2e import assert_stayed_offline, env  # noqa: F401 (fixture)
from twinchat.domain.control import ConsentDenied, Use
from twinchat.domain.survey import Question
from twinchat.services import TwinService

pytestmark = pytest.mark.slow

MARITAL = "What is your marital status?"
OPTIONS = ("Married", "Widowed", "Divorced", "Separated", "Never married")
PEOPLE = {
    "P-1": ("Divorced", "I live in Paris, in a flat near the Gare du Nord"),
    "P-2": ("Married", "I live in Manchester with my family"),
    "P-3": ("Married", "I live in Leeds"),
    "P-4": ("Never married", "I live in Bristol near the harbour"),
}
UNRELATED = [
    "Bought a 3 tier regency cake stand and a set of cake tins",
    "Support ticket: the kettle arrived with a dent, asked for a replacement",
    "Prefers delivery on Saturdays and pays by card",
    "Review of the garden hose: leaks at the tap, two stars",
]


def history() -> list[dict]:
    rows = []
    for twin_id, (status, home) in PEOPLE.items():
        rows.append({"customer_id": twin_id, "text": home, "source": "crm", "timestamp": "2019-05-01"})
        rows.append(
            {
                "customer_id": twin_id,
                "text": f"Q: {MARITAL} A: {status}",
                "source": "survey",
                "question_id": "gss:marital",
                "question": MARITAL,
                "answer": status,
                "timestamp": "2019-06-01",
            }
        )
    rows += [
        {"customer_id": "P-1", "text": t, "source": "purchase", "timestamp": "2020-01-10"} for t in UNRELATED
    ]
    return rows


@pytest.fixture
def service(real_service: TwinService) -> TwinService:
    from twinchat.domain.readers import RawRecord

    rows = history()
    report = real_service.ingest_records([RawRecord("people", i, r) for i, r in enumerate(rows)], panel="gss")
    assert report.stored == len(rows)
    return real_service


def test_free_and_multiple_choice_answers_follow_a_correction(service: TwinService) -> None:
    question = Question("gss:marital", MARITAL, OPTIONS)
    before = {t: service.choose(t, question).answer for t in PEOPLE}
    assert before == {t: status for t, (status, _) in PEOPLE.items()}
    paris = [m["event_id"] for m in service.memories("P-1") if "Paris" in m["text"]]
    unrelated = {m["event_id"] for m in service.memories("P-1") if m["text"] in UNRELATED}

    moved = service.correct("P-1", "I moved to Lyon last year, I don't live in Paris anymore")
    married = service.correct("P-1", "I'm married now, I remarried last spring")

    assert moved.superseded == paris
    assert married.survey is not None and married.survey.answer == "Married"
    assert len(married.superseded) == 1 and married.superseded[0] not in unrelated
    assert service.choose("P-1", question).answer == "Married"
    assert {t: service.choose(t, question).answer for t in PEOPLE if t != "P-1"} == {
        t: before[t] for t in PEOPLE if t != "P-1"
    }
    answer = service.ask("P-1", "Where do you live these days?")
    cited = [c.event_id for c in answer.citations]
    assert moved.event_id in cited and not set(paris) & set(cited)
    assert "Paris" not in answer.answer or "Lyon" in answer.answer
    rows = {m["event_id"]: m for m in service.memories("P-1")}
    assert all(rows[e]["valid"] for e in unrelated)
    assert sum(not r["valid"] for r in rows.values()) == 2
    assert rows[paris[0]]["status"]["invalidated_by"] == moved.event_id
    # Other customers' identical kinds of fact are theirs: untouched.
    assert all(m["valid"] for t in PEOPLE if t != "P-1" for m in service.memories(t))


def test_withdrawn_consent_blocks_at_once_and_the_audit_shows_every_use(service: TwinService) -> None:
    research = Use("local:ada", "research")
    service.ask("P-2", "Where do you live?", use=research)
    service.set_consent("P-2", "research", False, use=Use("local:p2", "self"))
    with pytest.raises(ConsentDenied, match="withdrew consent for research"):
        service.ask("P-2", "Where do you live?", use=research)
    service.ask("P-2", "Where do you live?", use=Use("key:shop", "product"))
    actions = [(e.action, e.actor, e.purpose) for e in service.audit(twin_id="P-2")]
    assert actions[1:] == [
        ("ask", "local:ada", "research"),
        ("consent", "local:p2", "self"),
        ("refused", "local:ada", "research"),
        ("ask", "key:shop", "product"),
    ]


def test_the_customer_controls_their_twin_from_the_command_line(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    data = tmp_path / "people.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in history()))
    assert run_cli(env, "ingest", str(data), "--panel", "gss").returncode == 0

    denied = run_cli(env, "consent", "P-2", "--purpose", "research", "--deny")
    assert denied.returncode == 0 and "research   withdrawn since" in denied.stdout
    refused = run_cli(env, "ask", "P-2", "Where do you live?")
    assert refused.returncode == 3
    assert "refused: twin P-2: the customer withdrew consent for research" in refused.stderr
    assert run_cli(env, "ask", "P-2", "Where do you live?", "--purpose", "product").returncode == 0

    corrected = run_cli(
        env, "correct", "P-1", "I moved to Lyon last year, I don't live in Paris anymore", "--json"
    )
    assert corrected.returncode == 0, corrected.stderr
    superseded = json.loads(corrected.stdout)["superseded"]
    assert len(superseded) == 1
    listed = run_cli(env, "memories", "P-1", "--search", "Paris")
    assert f"{superseded[0]}" in listed.stdout and "[superseded" in listed.stdout

    out = tmp_path / "export.json"
    assert run_cli(env, "export", "P-1", "--out", str(out)).returncode == 0
    exported = json.loads(out.read_text())
    assert len(exported["corrections"]) == 1 and len(exported["events"]) == 7

    assert run_cli(env, "erase", "P-1").returncode == 2  # no --yes: nothing happens
    assert run_cli(env, "erase", "P-1", "--yes").returncode == 0
    assert "P-1" not in [t["twin_id"] for t in json.loads(run_cli(env, "twins", "--json").stdout)]
    audit = json.loads(run_cli(env, "audit", "--json").stdout)
    assert [e["action"] for e in audit if e["twin_id"] == "P-2"] == ["ingest", "consent", "refused", "ask"]
    assert audit[-1]["action"] == "erase" and not [e for e in audit if e["twin_id"] == "P-1"]
    assert_stayed_offline(env)


def test_the_customer_controls_their_twin_over_http(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    data = tmp_path / "people.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in history()))
    assert run_cli(env, "ingest", str(data)).returncode == 0
    key = run_cli(env, "keys", "create", "--role", "customer", "--twin", "P-1").stdout.strip()
    shop = run_cli(env, "keys", "create", "--role", "product").stdout.strip()
    admin = run_cli(env, "keys", "create", "--role", "admin").stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "twinchat.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    me, product, operator = ({"Authorization": f"Bearer {k}"} for k in (key, shop, admin))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=server)
        ask = {"question": "Where do you live?"}
        assert httpx.post(f"{base}/twins/P-1/ask", json=ask, headers=product, timeout=120).status_code == 200
        withdrawn = httpx.put(f"{base}/twins/P-1/consent/product", json={"granted": False}, headers=me)
        assert withdrawn.status_code == 200
        refused = httpx.post(f"{base}/twins/P-1/ask", json=ask, headers=product, timeout=120)
        assert refused.status_code == 403 and "withdrew consent for product" in refused.json()["message"]

        made = httpx.post(
            f"{base}/twins/P-1/corrections",
            json={"statement": "I'm married now, I remarried last spring"},
            headers=me,
        )
        assert made.status_code == 201 and made.json()["survey_answer"]["answer"] == "Married"
        memories = httpx.get(f"{base}/twins/P-1/memories", params={"valid_only": True}, headers=me).json()
        assert "Q: What is your marital status? A: Divorced" not in [m["text"] for m in memories]
        exported = httpx.get(f"{base}/twins/P-1/export", headers=me).json()
        assert exported["consents"]["product"]["granted"] is False

        assert httpx.get(f"{base}/twins/P-2/export", headers=me).status_code == 404
        erased = httpx.delete(f"{base}/twins/P-1", headers=me)
        assert erased.status_code == 200
        assert httpx.get(f"{base}/twins/P-1", headers=operator).status_code == 404
        audit = httpx.get(f"{base}/audit", headers=operator).json()
        assert [e["action"] for e in audit][-1] == "erase"
        assert not [e for e in audit if e["twin_id"] == "P-1"]
    finally:
        stop(server)
    assert_stayed_offline(env)
