"""The customer portal: a customer meets their own twin, sees what it knows, corrects it, and decides.

A customer API key signs in (``twinchat keys create --role customer --twin ID``); every action is the
customer's own use of their twin (purpose ``self``), audited under the key, as over HTTP. The page lays out
what ``Portal``'s handlers return; the handlers only call TwinService and shape its results for display.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import gradio as gr
import pandas as pd

from twinchat.domain.control import PURPOSES, Use
from twinchat.domain.models import Answer
from twinchat.domain.profile import show_document
from twinchat.services import TwinService
from ui.common import SignedOut, shown, signed_in
from ui.downloads import export_name, remove_exports, write_download
from ui.views import answer_message, memory_table, profile_card

PURPOSE_TEXT = {
    "research": "Research: interviews and surveys by our researchers",
    "product": "Product: our services asking your twin, e.g. to test a new feature",
    "marketing": "Marketing: simulating campaigns before they are sent",
}


class Portal:
    """The portal's handlers: plain methods over a TwinService, testable without a browser."""

    def __init__(self, service: TwinService) -> None:
        self.service = service
        self.page: gr.Blocks | None = (
            None  # set by the page: erasure removes its downloads from Gradio's cache
        )

    def _me(self, secret: str | None) -> tuple[str, Use]:
        key = signed_in(self.service, secret, "customer")
        assert key.twin_id is not None  # a customer key is always bound to its twin
        return key.twin_id, key.use()

    @shown
    def sign_in(self, secret: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        """(the session's key, a welcome line, the main area shown, the sign-in row hidden)."""
        secret = (secret or "").strip()
        key = self.service.authenticate(secret)
        if key is None:
            raise SignedOut("unknown or revoked key: use the customer key you were given")
        if key.role != "customer" or key.twin_id is None:
            raise SignedOut(
                f"this is the customer portal; a {key.role} key signs in to the research studio at /studio"
            )
        welcome = (
            f"Signed in as customer **{key.twin_id}**. Your twin answers as you would; it is a simulation."
        )
        return secret, welcome, gr.update(visible=True), gr.update(visible=False)

    def sign_out(self) -> tuple[str, str, dict[str, Any], dict[str, Any], list, None]:
        """Forget the key and the conversation of this browser session."""
        return "", "Signed out.", gr.update(visible=False), gr.update(visible=True), [], None

    # --- what my twin knows ----------------------------------------------------------------------------------

    @shown
    def overview(self, secret: str, search: str) -> tuple[str, pd.DataFrame, bool, bool, bool, str]:
        """(profile card, memories, consent per purpose, when each consent was last changed)."""
        twin_id, use = self._me(secret)
        card = profile_card(
            show_document(
                self.service.twin(twin_id), self.service.profile(twin_id), self.service.identifiers(twin_id)
            )
        )
        consents = self.service.consents(twin_id)
        granted = [(c := consents[p]) is not None and c.granted for p in PURPOSES]
        research, product, marketing = granted
        return card, self.memories(secret, search), research, product, marketing, _consent_note(consents)

    @shown
    def memories(self, secret: str, search: str) -> pd.DataFrame:
        """Everything the twin holds about the customer, superseded memories included and marked."""
        twin_id, use = self._me(secret)
        return memory_table(self.service.memories(twin_id, search=(search or "").strip() or None, use=use))

    @shown
    def correct(self, secret: str, statement: str) -> tuple[str, str]:
        """Store the customer's statement; report what it replaced. Returns (report, cleared input)."""
        twin_id, use = self._me(secret)
        if not (statement or "").strip():
            raise ValueError("write what your twin should know instead")
        result = self.service.correct(twin_id, statement, use=use)
        n = len(result.superseded)
        lines = [f"Stored: *{result.statement}*"]
        lines.append(
            f"It replaces {n} earlier {'memory' if n == 1 else 'memories'} (marked superseded below)."
            if n
            else "It contradicts nothing your twin held; kept as a new fact."
        )
        if result.survey is not None:
            lines.append(
                f"Your answer to survey question {result.survey.key} is now: {result.survey.answer}."
            )
        return "\n\n".join(lines), ""

    # --- chat --------------------------------------------------------------------------------------------------

    @shown
    def send(
        self, secret: str, session_id: str | None, message: str, history: list[dict[str, Any]]
    ) -> Iterator[tuple[list, str | None, str]]:
        """Stream the twin's answer; "Actually, I ..." corrects it. Yields (chat, session, message box)."""
        twin_id, use = self._me(secret)
        if not (message or "").strip():
            raise ValueError("write a message first")
        if session_id is None or self.service.session(session_id).twin_id != twin_id:
            session_id = self.service.start_session(twin_id).session_id
        history = [*history, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        text = ""
        for part in self.service.chat_stream(session_id, message, use=use):
            if isinstance(part, Answer):
                history[-1] = {"role": "assistant", "content": answer_message(part)}
            else:
                text += part
                history[-1] = {"role": "assistant", "content": text}
            yield history, session_id, ""

    # --- consent, export, erasure ------------------------------------------------------------------------------

    @shown
    def set_consent(self, secret: str, purpose: str, granted: bool) -> str:
        twin_id, use = self._me(secret)
        self.service.set_consent(twin_id, purpose, bool(granted), use=use)
        gr.Info(f"{purpose}: {'granted' if granted else 'withdrawn'}")
        return _consent_note(self.service.consents(twin_id))

    @shown
    def export(self, secret: str) -> str:
        """Everything held about the customer, as a JSON file to download."""
        twin_id, use = self._me(secret)
        data = self.service.export(twin_id, use=use)
        return write_download(export_name(twin_id), json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    @shown
    def erase(
        self, secret: str, confirmation: str
    ) -> tuple[str, str, dict[str, Any], dict[str, Any], list, None, None]:
        """Erase the customer, once they typed their id to confirm; then sign them out."""
        twin_id, use = self._me(secret)
        if (confirmation or "").strip() != twin_id:
            raise ValueError(f"to erase your twin, type your customer id ({twin_id}) in the box first")
        self.service.erase(twin_id, use=use)
        remove_exports(twin_id, blocks=self.page)
        message = (
            f"Your twin {twin_id} and everything derived from your history were erased; your key no longer "
            "works. The audit keeps one entry that an erasure happened, without your id."
        )
        return "", message, gr.update(visible=False), gr.update(visible=True), [], None, None


def _consent_note(consents: dict[str, Any]) -> str:
    lines = []
    for purpose in PURPOSES:
        consent = consents[purpose]
        state = "never granted" if consent is None else "granted" if consent.granted else "withdrawn"
        since = f" since {consent.updated_at:%Y-%m-%d %H:%M} UTC" if consent else ""
        lines.append(f"- **{purpose}**: {state}{since}")
    return "\n".join(lines)
