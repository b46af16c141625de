"""The customer portal's page: the layout of ``ui.portal.Portal``'s handlers."""

from __future__ import annotations

import gradio as gr

from twinchat.services import TwinService
from ui.common import PRIVATE, QUIET
from ui.downloads import DELETE_CACHE
from ui.portal import PURPOSE_TEXT, Portal
from ui.views import MEMORY_COLUMNS, MEMORY_WIDTHS

INTRO = (
    "**Your twin is a simulation of you**, built from your history with us. Its answers are what you would "
    "likely say, not what you said. Here you can see what it knows, correct it, decide what it may be used "
    "for, take your data with you, or have it erased."
)


def build_portal(service: TwinService) -> gr.Blocks:
    portal = Portal(service)
    with gr.Blocks(title="twinchat · my twin", delete_cache=DELETE_CACHE) as page:
        portal.page = page
        gr.Markdown("# twinchat · my twin")
        gr.Markdown(INTRO, elem_classes="simulated-banner")
        secret = gr.State("")
        session = gr.State(None)
        with gr.Row(equal_height=True) as key_row:
            key_box = gr.Textbox(
                label="Your customer key",
                type="password",
                placeholder="tck_...",
                scale=4,
                elem_id="portal-key",
            )
            sign_in = gr.Button("Sign in", variant="primary", scale=1, elem_id="portal-sign-in")
        welcome = gr.Markdown(elem_id="portal-welcome")

        with gr.Column(visible=False) as main:
            with gr.Row():
                gr.Markdown("Answers are simulated; corrections, consent and erasure are real.")
                sign_out = gr.Button("Sign out", size="sm", scale=0, min_width=100, elem_id="portal-sign-out")
            with gr.Tabs():
                with gr.Tab("Talk to my twin", id="chat"):
                    with gr.Row():
                        with gr.Column(scale=3):
                            chat = gr.Chatbot(
                                label="Your twin (simulated)", height=420, elem_id="portal-chat"
                            )
                            with gr.Row(equal_height=True):
                                message = gr.Textbox(
                                    label="Message",
                                    placeholder='Ask it anything, or correct it: "Actually, I ..."',
                                    scale=4,
                                    elem_id="portal-message",
                                )
                                send = gr.Button("Send", variant="primary", scale=1, elem_id="portal-send")
                        with gr.Column(scale=2):
                            card = gr.Markdown(elem_id="portal-card")
                with gr.Tab("What my twin knows", id="memories"):
                    with gr.Row(equal_height=True):
                        statement = gr.Textbox(
                            label="Correct a fact: tell your twin what is true now",
                            placeholder="I moved to Lyon last year, I no longer live in Paris",
                            scale=4,
                            elem_id="portal-statement",
                        )
                        correct = gr.Button(
                            "Correct my twin", variant="primary", scale=1, elem_id="portal-correct"
                        )
                    corrected = gr.Markdown(elem_id="portal-corrected")
                    with gr.Row(equal_height=True):
                        search = gr.Textbox(label="Search my memories", scale=4, elem_id="portal-search")
                        find = gr.Button("Search", scale=1)
                    memories = gr.Dataframe(
                        headers=MEMORY_COLUMNS,
                        column_widths=MEMORY_WIDTHS,
                        interactive=False,
                        wrap=True,
                        max_height=460,
                        label="Memories, newest first (superseded ones are kept and marked)",
                        elem_id="portal-memories",
                    )
                with gr.Tab("Consent", id="consent"):
                    gr.Markdown("What may your twin be used for? A change applies to the very next use.")
                    boxes = {
                        purpose: gr.Checkbox(label=text, elem_id=f"portal-consent-{purpose}")
                        for purpose, text in PURPOSE_TEXT.items()
                    }
                    consent_note = gr.Markdown(elem_id="portal-consent-note")
                with gr.Tab("Export or erase", id="data"):
                    gr.Markdown(
                        "#### Take your data with you\nEverything we hold about you, as one JSON file."
                    )
                    export = gr.Button("Export my data", elem_id="portal-export")
                    download = gr.File(label="Your export", interactive=False, elem_id="portal-download")
                    gr.Markdown(
                        "#### Erase my twin\nThis deletes your twin, your history with us and everything "
                        "derived from it. It cannot be undone, and signs you out."
                    )
                    with gr.Row(equal_height=True):
                        confirmation = gr.Textbox(
                            label="Type your customer id to confirm", scale=3, elem_id="portal-erase-confirm"
                        )
                        erase = gr.Button("Erase my twin", variant="stop", scale=1, elem_id="portal-erase")

        research, product, marketing = boxes.values()
        overview = (
            portal.overview,
            [secret, search],
            [card, memories, research, product, marketing, consent_note],
        )
        signed_out = [secret, welcome, main, key_row, chat, session]
        for trigger in (sign_in.click, key_box.submit):
            trigger(portal.sign_in, key_box, [secret, welcome, main, key_row], **QUIET).success(
                lambda: "", None, key_box, **PRIVATE
            ).then(*overview, **PRIVATE)
        for trigger in (send.click, message.submit):
            trigger(portal.send, [secret, session, message, chat], [chat, session, message], **PRIVATE).then(
                *overview, **PRIVATE
            )
        for trigger in (correct.click, statement.submit):
            trigger(portal.correct, [secret, statement], [corrected, statement], **PRIVATE).success(
                *overview, **PRIVATE
            )
        for trigger in (find.click, search.submit):
            trigger(portal.memories, [secret, search], memories, **PRIVATE)
        for purpose, box in boxes.items():
            box.input(
                lambda s, v, p=purpose: portal.set_consent(s, p, v), [secret, box], consent_note, **PRIVATE
            ).success(*overview, **PRIVATE)
        export.click(portal.export, secret, download, **PRIVATE)
        erase.click(portal.erase, [secret, confirmation], [*signed_out, download], **QUIET).success(
            lambda: "", None, confirmation, **PRIVATE
        )
        sign_out.click(portal.sign_out, None, signed_out, **QUIET)
    return page
