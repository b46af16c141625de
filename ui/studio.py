"""The research studio: find twins, chat with one, interview a panel, run a questionnaire over it.

A researcher (or admin) API key signs in; every action is a research use of the twins, checked against their
customers' consent and audited under the key, exactly as over HTTP. The page lays out what ``Studio``'s
handlers return; the handlers only call TwinService and shape its results for display.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from twinchat.domain.campaign import Campaign
from twinchat.domain.control import ConsentDenied, Use
from twinchat.domain.keys import ApiKey
from twinchat.domain.models import Answer
from twinchat.domain.profile import show_document
from twinchat.domain.survey import Question, QuestionError
from twinchat.jobs import records_csv
from twinchat.services import TwinService
from twinchat.simulation_files import chart, summary_lines
from ui.common import SignedOut, clip, shown, signed_in
from ui.downloads import write_download
from ui.views import EVIDENCE_COLUMNS, answer_message, evidence_table, predictions_card, profile_card

ROLES = ("researcher", "admin")  # research: finding twins, chat, interviews, surveys
MARKETERS = ("admin", "product")  # marketing: strategy tests (a product key sees only that tab's results)
SIGN_IN_ROLES = ("researcher", "admin", "product")
RATE_COLUMNS = ["breakdown", "group", "twins", "variant", "rate", "interval"]
CHANNEL_CHOICES = ["email", "sms", "push", "post", "social", "web"]
TWIN_COLUMNS = ["twin", "events", "panels", "consent", "label", "summary"]
TWIN_WIDTHS: list[str | int] = ["90px", "70px", "110px", "90px", "80px", "340px"]
INTERVIEW_COLUMNS = ["twin", "answer", "evidence", "note"]
QUESTION_COLUMNS = ["id", "text", "type", "options"]
RESULT_COLUMNS = ["twin", "question", "answer", "distribution", "reason", "evidence"]
MAX_LISTED = 200
# Gradio gives a handler a progress bar when a parameter defaults to a gr.Progress (the same object in every
# call, as a default in the signature would be: its callback is per event).
PROGRESS = gr.Progress()
EXAMPLE_QUESTIONS: list[dict[str, Any]] = [
    {
        "id": "delivery",
        "text": "Which delivery day suits you best?",
        "options": ["Weekday", "Saturday", "Any day"],
    },
    {
        "id": "gift",
        "text": "Do you mostly buy for yourself or as gifts?",
        "options": ["Myself", "Gifts", "Both"],
    },
    {"id": "improve", "text": "What should the shop improve first?"},
]
SYNTHETIC_NOTE = (
    "Synthetic twins (invented customers, built from a panel's patterns) come with the generator, which does "
    "not exist yet (issue 7). Twins marked **synthetic** in the list are labelled as such everywhere."
)


class Studio:
    """The studio's handlers: plain methods over a TwinService, testable without a browser."""

    def __init__(self, service: TwinService) -> None:
        self.service = service

    def _use(self, secret: str | None) -> Use:
        return signed_in(self.service, secret, *ROLES).use("research")

    # --- signing in --------------------------------------------------------------------------------------

    @shown
    def sign_in(self, secret: str) -> tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(the session's key, a welcome line, main area shown, sign-in row hidden, the panels to choose from)."""
        secret = (secret or "").strip()
        key = self.service.authenticate(secret)
        if key is None:
            raise SignedOut("unknown or revoked key; `twinchat keys create --role researcher` makes one")
        if key.role not in SIGN_IN_ROLES:
            raise SignedOut(_wrong_role(key))
        panels = ["(all twins)", *self.service.panels()]
        welcome = f"Signed in with {key.role} key `{key.key_id}`{f' ({key.label})' if key.label else ''}."
        visible, hidden = gr.update(visible=True), gr.update(visible=False)
        return secret, welcome, visible, hidden, gr.update(choices=panels, value=panels[0])

    def sign_out(self) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        return "", "Signed out.", gr.update(visible=False), gr.update(visible=True)

    # --- finding twins and their profiles ----------------------------------------------------------------

    @shown
    def find(self, secret: str, query: str, panel: str | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Twins whose id, name, panels, profile summary, favourite products and categories or countries contain
        every word of the query."""
        self._use(secret)
        twins = self.service.twins(panel=_panel(panel))
        words = (query or "").lower().split()
        rows = []
        for twin in twins:
            profile = self.service.profile(twin.twin_id)
            summary, buys = profile.summary, profile.facts()["purchases"]
            attributes = [
                *(p["product"] for p in buys["favourite_products"]),
                *(c["category"] for c in buys["favourite_categories"]),
                *buys["countries"],
            ]
            haystack = " ".join(
                [twin.twin_id, twin.display_name or "", *twin.panels, summary, *attributes]
            ).lower()
            if not all(w in haystack for w in words):
                continue
            consent = self.service.consents(twin.twin_id)["research"]
            rows.append(
                {
                    "twin": twin.twin_id,
                    "events": twin.n_events,
                    "panels": ", ".join(twin.panels),
                    "consent": "n/a" if twin.synthetic else "yes" if consent and consent.granted else "no",
                    "label": "synthetic" if twin.synthetic else "",
                    "summary": clip(summary, 140),
                }
            )
            if len(rows) >= MAX_LISTED:
                break
        ids = [r["twin"] for r in rows]
        return pd.DataFrame(rows, columns=TWIN_COLUMNS), gr.update(choices=ids, value=ids[0] if ids else None)

    def pick(self, selected: gr.SelectData) -> dict[str, Any]:
        """The twin of the row clicked in the list."""
        return gr.update(value=(selected.row_value or [None])[0])

    @shown
    def show(self, secret: str, twin_id: str | None) -> tuple[str, list, list, pd.DataFrame, None]:
        """A twin's profile card, and a fresh conversation with it: (card, chat, evidence per turn, table, session)."""
        key = signed_in(self.service, secret, *ROLES)
        if not twin_id:
            return "Choose a twin.", [], [], _empty(EVIDENCE_COLUMNS), None
        card = profile_card(show_document(self.service.twin(twin_id), self.service.profile(twin_id)))
        return f"{card}\n\n{self._predictions(key, twin_id)}", [], [], _empty(EVIDENCE_COLUMNS), None

    def _predictions(self, key: ApiKey, twin_id: str) -> str:
        """The twin's behaviour predictions: a marketing use, so for admin keys and with the customer's consent."""
        if key.role != "admin":
            document = {
                "reason": "a marketing use: shown to admin keys (product keys: GET /v1/twins/{id}/predictions)"
            }
        else:
            try:
                document = self.service.predictions(twin_id, use=key.use("marketing"))
            except ConsentDenied as exc:
                document = {"refused": f"Refused: {exc}"}
        return predictions_card(document)

    # --- chat ------------------------------------------------------------------------------------------------

    @shown
    def send(
        self,
        secret: str,
        twin_id: str | None,
        session_id: str | None,
        message: str,
        history: list[dict[str, str]],
        evidence: list[list[dict[str, Any]] | None],
    ) -> Iterator[tuple[list, list, pd.DataFrame, str | None, str]]:
        """Stream the twin's answer; yields (chat, evidence per turn, evidence table, session, message box)."""
        use = self._use(secret)
        if not twin_id:
            raise ValueError("choose a twin first")
        if not (message or "").strip():
            raise ValueError("write a question first")
        if session_id is None or self.service.session(session_id).twin_id != twin_id:
            session_id = self.service.start_session(twin_id).session_id
        parts = self.service.chat_stream(session_id, message, use=use)
        first = next(parts)  # a refusal is raised here, before the question is shown as asked
        history = [*history, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        evidence = [*evidence, None, None]
        table = _empty(EVIDENCE_COLUMNS)
        text = ""
        for part in _chain(first, parts):
            if isinstance(part, Answer):
                table = evidence_table(part, self.service.memories(twin_id, use=use))
                history[-1] = {"role": "assistant", "content": answer_message(part)}
                evidence[-1] = table.to_dict("records")
            else:
                text += part
                history[-1] = {"role": "assistant", "content": text}
            yield history, evidence, table, session_id, ""

    def evidence_at(
        self, evidence: list[list[dict[str, Any]] | None], selected: gr.SelectData
    ) -> pd.DataFrame:
        """The evidence of the answer clicked in the chat."""
        index = selected.index[0] if isinstance(selected.index, list | tuple) else selected.index
        rows = evidence[index] if isinstance(index, int) and 0 <= index < len(evidence) else None
        return pd.DataFrame(rows or [], columns=EVIDENCE_COLUMNS)

    # --- interviewing a panel -----------------------------------------------------------------------------

    @shown
    def interview(
        self, secret: str, panel: str | None, question: str, limit: float, progress: Any = PROGRESS
    ) -> pd.DataFrame:
        """One question to each twin of a panel, answers side by side; refusals are listed, not fatal."""
        use = self._use(secret)
        if not (question or "").strip():
            raise ValueError("write the question to ask the panel")
        twins = self.service.twins(panel=_panel(panel))[: int(limit)]
        if not twins:
            raise ValueError("this panel has no twins")
        rows = []
        for i, twin in enumerate(twins):
            progress((i, len(twins)), desc=f"asking {twin.twin_id}")
            try:
                answer = self.service.ask(twin.twin_id, question, use=use)
            except ConsentDenied as exc:
                rows.append({"twin": twin.twin_id, "answer": "", "evidence": "", "note": f"refused: {exc}"})
                continue
            note = "no relevant history" if answer.abstained else "simulated"
            rows.append(
                {
                    "twin": twin.twin_id + (" (synthetic)" if twin.synthetic else ""),
                    "answer": answer.answer,
                    "evidence": "; ".join(clip(c.text, 60) for c in answer.citations),
                    "note": note,
                }
            )
        return pd.DataFrame(rows, columns=INTERVIEW_COLUMNS)

    # --- questionnaires -----------------------------------------------------------------------------------

    @shown
    def load_questionnaire(self, path: str | None) -> pd.DataFrame:
        """An uploaded QUESTIONS.json (as `twinchat survey` reads it) into the editable table."""
        if not path:
            return questions_table(EXAMPLE_QUESTIONS)
        name = Path(path).name
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{name}: not a JSON file ({exc})") from None
        if not isinstance(data, list) or not data:
            raise ValueError(f"{name}: expected a non-empty JSON list of questions")
        try:
            questions = [Question.from_dict(q, index=i) for i, q in enumerate(data)]
        except QuestionError as exc:
            raise ValueError(f"{name}: {exc}") from None
        return questions_table([_question_dict(q) for q in questions])

    @shown
    def run_survey(
        self,
        secret: str,
        panel: str | None,
        twin_ids: str,
        table: pd.DataFrame,
        progress: Any = PROGRESS,
    ) -> tuple[pd.DataFrame, dict[str, Any], str, str]:
        """(results table, results for the charts, CSV download, summary) of the questionnaire over the panel."""
        use = self._use(secret)
        questions = questions_from_table(table)
        chosen = [t.strip() for t in (twin_ids or "").split(",") if t.strip()]
        twins = chosen or [t.twin_id for t in self.service.twins(panel=_panel(panel))]
        if not twins:
            raise ValueError("no twins to ask: choose a panel that has twins, or name them")
        refused: list[str] = []
        total = len(twins) * len(questions)
        progress((0, total), desc="starting")
        records = []
        for record in self.service.survey(questions, twins, use=use, refused=refused):
            records.append(record)
            total = (len(twins) - len(refused)) * len(questions)
            progress((len(records), total), desc=f"{record['twin_id']}: {record['question_id']}")
        csv = write_download("survey-results.csv", "".join(records_csv(json.dumps(r) for r in records)))
        asked = len(twins) - len(refused)
        summary = f"{len(records)} simulated answers of {asked} twins to {len(questions)} questions."
        if refused:
            summary += "\n\nLeft out, no consent for research:\n" + "\n".join(f"- {r}" for r in refused)
        results = {"questions": [_question_dict(q) for q in questions], "records": records}
        return results_table(records), results, csv, summary

    # --- strategy tests -------------------------------------------------------------------------------------

    @shown
    def simulate(
        self,
        secret: str,
        panel: str | None,
        name: str,
        channel: str,
        text_a: str,
        price_a: float | None,
        text_b: str,
        price_b: float | None,
        segments: list[str] | None,
    ) -> tuple[str, str | None, pd.DataFrame, str]:
        """(summary, chart, rates table, results.json download) of two variants tested on the panel's twins.

        A marketing use (admin or product key): twins without their customers' consent are refused and counted.
        """
        use = signed_in(self.service, secret, *SIGN_IN_ROLES).use("marketing")
        variants: dict[str, dict[str, Any]] = {}
        for key, text, price in (("A", text_a, price_a), ("B", text_b, price_b)):
            variants[key] = {"text": text or ""}
            if price is not None and not (isinstance(price, float) and math.isnan(price)):
                variants[key]["price"] = float(price)
        data = {
            "name": (name or "").strip() or "studio-test",
            "channel": channel or "email",
            "variants": variants,
            "segments": list(segments or []),
        }
        campaign = Campaign.from_dict(data, source="the form")
        chosen = _panel(panel)
        twins = [t.twin_id for t in self.service.twins(panel=chosen)]
        if not twins:
            raise ValueError("this panel has no twins")
        document = self.service.simulate(replace(campaign, panel=chosen), twins, use=use)
        summary = "\n\n".join(summary_lines(document))
        if document["refused"]:
            summary += "\n\nLeft out, no consent for marketing:\n" + "\n".join(
                f"- {r['reason']}" for r in document["refused"]
            )
        results = write_download(
            "simulation-results.json", json.dumps(document, indent=2, ensure_ascii=False)
        )
        picture = None
        if document["variants"]:
            picture = str(Path(results).with_name("chart.png"))
            chart(document, Path(picture))
        return summary, picture, rates_table(document), results


def rates_table(document: dict[str, Any]) -> pd.DataFrame:
    """Each variant's rate and interval, overall and per segment value, one row each."""
    blocks = [("all twins", {"all": {"n": document["twins"]["answered"], "variants": document["variants"]}})]
    blocks += [(name, groups) for name, groups in document.get("segments", {}).items()]
    rows = [
        {
            "breakdown": name,
            "group": value,
            "twins": group["n"],
            "variant": key,
            "rate": f"{v['rate']:.1%}",
            "interval": f"{v['interval'][0]:.1%} to {v['interval'][1]:.1%}",
        }
        for name, groups in blocks
        for value, group in groups.items()
        for key, v in group["variants"].items()
    ]
    return pd.DataFrame(rows, columns=RATE_COLUMNS)


def questions_table(questions: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "id": q["id"],
            "text": q["text"],
            "type": q.get("type", "choice" if q.get("options") else "free"),
            "options": " | ".join(q.get("options") or []),
        }
        for q in questions
    ]
    return pd.DataFrame(rows, columns=QUESTION_COLUMNS)


def questions_from_table(table: pd.DataFrame | None) -> list[Question]:
    """The edited table as questions, validated as `twinchat survey` validates QUESTIONS.json."""
    if table is None or len(table) == 0:
        raise ValueError("the questionnaire is empty: add a question or upload a QUESTIONS.json")
    questions = []
    for i, row in enumerate(table.fillna("").to_dict("records")):
        if not str(row.get("id", "")).strip() and not str(row.get("text", "")).strip():
            continue  # an empty row left in the editor
        options = [o.strip() for o in str(row.get("options", "")).split("|") if o.strip()]
        kind = str(row.get("type", "")).strip().lower() or None
        data: dict[str, Any] = {"id": str(row.get("id", "")).strip(), "text": str(row.get("text", ""))}
        if kind not in (None, "free"):
            data["type"] = kind
        if options:
            data["options"] = options
        questions.append(Question.from_dict(data, index=i))
    if not questions:
        raise ValueError("the questionnaire is empty: add a question or upload a QUESTIONS.json")
    return questions


def results_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "twin": r["twin_id"],
            "question": r["question_id"],
            "answer": r["answer"],
            "distribution": ", ".join(f"{k} {v:.0%}" for k, v in (r.get("distribution") or {}).items()),
            "reason": r.get("reason", ""),
            "evidence": r.get("evidence", "")
            or "; ".join(clip(c["text"], 50) for c in r.get("citations", [])),
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def answer_shares(results: dict[str, Any]) -> list[tuple[str, pd.DataFrame]]:
    """For each multiple-choice or numeric question: the mean of the twins' answer distributions.

    Free questions have no distribution (their answers are words, read in the table) and no chart.
    """
    charts = []
    for q in results.get("questions", []):
        records = [r for r in results.get("records", []) if r["question_id"] == q["id"] and r["distribution"]]
        if not records:
            continue
        options = list(q.get("options") or [])
        options += sorted({o for r in records for o in r["distribution"]} - set(options), key=_as_number)
        shares = [
            {"answer": o, "share": sum(r["distribution"].get(o, 0.0) for r in records) / len(records)}
            for o in options
        ]
        n = len(records)
        charts.append((f"{q['id']}: {q['text']} ({n} {'twin' if n == 1 else 'twins'})", pd.DataFrame(shares)))
    return charts


def _as_number(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def _question_dict(q: Question) -> dict[str, Any]:
    data: dict[str, Any] = {"id": q.id, "text": q.text}
    if q.options:
        data["options"] = list(q.options)
    if q.numeric:
        data["type"] = "numeric"
    return data


def _panel(panel: str | None) -> str | None:
    return None if not panel or panel.startswith("(") else panel


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([], columns=columns)


def _chain(first: str | Answer, rest: Iterator[str | Answer]) -> Iterator[str | Answer]:
    yield first
    yield from rest


def _wrong_role(key: ApiKey) -> str:
    if key.role == "customer":
        return "this is the research studio; a customer key signs in to the customer portal at /portal"
    return f"a {key.role} key may not use the studio; it needs a researcher, admin or product key"
