"""The research studio's page: the layout of ``ui.studio.Studio``'s handlers."""

from __future__ import annotations

from typing import Any

import gradio as gr

from twinchat.domain.campaign import SEGMENTS
from twinchat.services import TwinService
from ui.common import PRIVATE, QUIET, SIMULATED
from ui.downloads import DELETE_CACHE
from ui.studio import (
    CHANNEL_CHOICES,
    EXAMPLE_QUESTIONS,
    INTERVIEW_COLUMNS,
    RATE_COLUMNS,
    RESULT_COLUMNS,
    SYNTHETIC_NOTE,
    TWIN_COLUMNS,
    TWIN_WIDTHS,
    Studio,
    answer_shares,
    questions_table,
)
from ui.views import EVIDENCE_COLUMNS, EVIDENCE_WIDTHS


def build_studio(service: TwinService) -> gr.Blocks:
    studio = Studio(service)
    with gr.Blocks(title="twinchat research studio", delete_cache=DELETE_CACHE) as page:
        gr.Markdown("# twinchat · research studio")
        gr.Markdown(SIMULATED, elem_classes="simulated-banner")
        secret = gr.State("")
        with gr.Row(equal_height=True) as key_row:
            key_box = gr.Textbox(
                label="API key (researcher, admin, or product for strategy tests)",
                type="password",
                placeholder="tck_...  (twinchat keys create --role researcher)",
                scale=4,
                elem_id="studio-key",
            )
            sign_in = gr.Button("Sign in", variant="primary", scale=1, elem_id="studio-sign-in")
        welcome = gr.Markdown(elem_id="studio-welcome")

        with gr.Column(visible=False) as main:
            with gr.Row(equal_height=True):
                panel = gr.Dropdown(label="Panel", choices=[], scale=1, elem_id="studio-panel")
                twin = gr.Dropdown(label="Twin", choices=[], scale=1, elem_id="studio-twin")
                sign_out = gr.Button("Sign out", size="sm", scale=0, min_width=100, elem_id="studio-sign-out")
            with gr.Tabs():
                with gr.Tab("Find a twin", id="find"):
                    with gr.Row():
                        with gr.Column(scale=3):
                            with gr.Row(equal_height=True):
                                query = gr.Textbox(
                                    label="Search by id, panel or attribute (country, category, ...)",
                                    scale=4,
                                    elem_id="studio-query",
                                )
                                search = gr.Button("Search", scale=1, elem_id="studio-search")
                            twins = gr.Dataframe(
                                headers=TWIN_COLUMNS,
                                column_widths=TWIN_WIDTHS,
                                interactive=False,
                                wrap=True,
                                max_height=420,
                                label="Twins (click a row to choose it)",
                                elem_id="studio-twins",
                            )
                        with gr.Column(scale=2):
                            card = gr.Markdown("Choose a twin.", elem_id="studio-card")
                with gr.Tab("Chat", id="chat"):
                    evidence_turns: Any = gr.State([])
                    session = gr.State(None)
                    with gr.Row():
                        with gr.Column(scale=5):
                            chat = gr.Chatbot(
                                label="Conversation (simulated)", height=440, elem_id="studio-chat"
                            )
                            with gr.Row(equal_height=True):
                                message = gr.Textbox(
                                    label="Your question",
                                    placeholder="Have you ever bought cake stands?",
                                    scale=4,
                                    elem_id="studio-message",
                                )
                                send = gr.Button("Send", variant="primary", scale=1, elem_id="studio-send")
                            restart = gr.Button("New conversation", size="sm")
                        with gr.Column(scale=4):
                            gr.Markdown("#### Evidence behind the answer\nClick an answer to see its own.")
                            evidence = gr.Dataframe(
                                headers=EVIDENCE_COLUMNS,
                                column_widths=EVIDENCE_WIDTHS,
                                interactive=False,
                                wrap=True,
                                label="Events cited, with relevance (cosine similarity)",
                                elem_id="studio-evidence",
                            )
                with gr.Tab("Interview a panel", id="interview"):
                    with gr.Row(equal_height=True):
                        question = gr.Textbox(
                            label="One question for every twin of the panel",
                            scale=4,
                            elem_id="interview-question",
                        )
                        limit = gr.Slider(1, 50, value=8, step=1, label="At most this many twins", scale=2)
                        ask = gr.Button("Ask the panel", variant="primary", scale=1, elem_id="interview-ask")
                    answers = gr.Dataframe(
                        headers=INTERVIEW_COLUMNS,
                        interactive=False,
                        wrap=True,
                        label="Answers side by side (simulated)",
                        elem_id="interview-answers",
                    )
                with gr.Tab("Survey", id="survey"):
                    gr.Markdown(
                        "Edit the questions (options separated by `|`; type: choice, likert, numeric or free) "
                        "or upload a QUESTIONS.json as `twinchat survey` reads it."
                    )
                    with gr.Row():
                        upload = gr.File(
                            label="QUESTIONS.json", file_types=[".json"], scale=1, elem_id="survey-upload"
                        )
                        questions = gr.Dataframe(
                            value=questions_table(EXAMPLE_QUESTIONS),
                            interactive=True,
                            wrap=True,
                            label="Questionnaire",
                            scale=3,
                            elem_id="survey-questions",
                        )
                    with gr.Row(equal_height=True):
                        survey_twins = gr.Textbox(
                            label="Twins (comma-separated; empty: the whole panel chosen above)", scale=3
                        )
                        run = gr.Button(
                            "Run over the panel", variant="primary", scale=1, elem_id="survey-run"
                        )
                    summary = gr.Markdown(elem_id="survey-summary")
                    results: Any = gr.State({})

                    @gr.render(inputs=results)
                    def charts(data: dict[str, Any]) -> None:
                        with gr.Row(elem_id="survey-charts"):
                            for title, shares in answer_shares(data or {}):
                                gr.BarPlot(
                                    shares,
                                    x="answer",
                                    y="share",
                                    y_title="mean probability",
                                    y_lim=[0, 1],
                                    title=title,
                                    sort=list(shares["answer"]),
                                    height=260,
                                    min_width=300,
                                    elem_classes="survey-chart",
                                )

                    table = gr.Dataframe(
                        headers=RESULT_COLUMNS,
                        interactive=False,
                        wrap=True,
                        max_height=360,
                        label="Answers (simulated)",
                        elem_id="survey-results",
                    )
                    csv = gr.File(label="Results as CSV", interactive=False, elem_id="survey-csv")
                with gr.Tab("Strategy test", id="strategy"):
                    gr.Markdown(
                        "Describe two variants of an offer or message and test them on the panel chosen above "
                        "(`twinchat simulate` does the same from a campaign file). A marketing use: it needs an "
                        "admin or product key, and twins whose customers did not consent are left out and "
                        "counted. Rates are the mean of each twin's probability of buying, with 95% bootstrap "
                        "intervals; B - A is paired on the same twins."
                    )
                    with gr.Row(equal_height=True):
                        campaign_name = gr.Textbox(
                            label="Campaign name", value="spring-cakestand", scale=2, elem_id="strategy-name"
                        )
                        channel = gr.Dropdown(
                            label="Channel",
                            choices=CHANNEL_CHOICES,
                            value="email",
                            scale=1,
                            elem_id="strategy-channel",
                        )
                        segments = gr.CheckboxGroup(
                            label="Break down by",
                            choices=list(SEGMENTS),
                            value=["country"],
                            scale=3,
                            elem_id="strategy-segments",
                        )
                    with gr.Row(equal_height=True):
                        text_a = gr.Textbox(
                            label="Variant A",
                            value="20% off cake stands this week",
                            scale=4,
                            elem_id="strategy-a",
                        )
                        price_a = gr.Number(label="Price A", value=8.5, scale=1, elem_id="strategy-price-a")
                    with gr.Row(equal_height=True):
                        text_b = gr.Textbox(
                            label="Variant B",
                            value="Free delivery on cake stands",
                            scale=4,
                            elem_id="strategy-b",
                        )
                        price_b = gr.Number(label="Price B", value=10.6, scale=1, elem_id="strategy-price-b")
                    simulate = gr.Button("Test on the panel", variant="primary", elem_id="strategy-run")
                    strategy_summary = gr.Markdown(elem_id="strategy-summary")
                    with gr.Row():
                        strategy_chart = gr.Image(
                            label="Response rate per variant (simulated)",
                            type="filepath",
                            interactive=False,
                            scale=3,
                            elem_id="strategy-chart",
                        )
                        rates = gr.Dataframe(
                            headers=RATE_COLUMNS,
                            interactive=False,
                            wrap=True,
                            label="Rates with 95% intervals",
                            scale=2,
                            elem_id="strategy-rates",
                        )
                    strategy_json = gr.File(
                        label="results.json (every twin's response)",
                        interactive=False,
                        elem_id="strategy-json",
                    )
                with gr.Tab("Synthetic twins", id="synthetic"):
                    gr.Markdown(SYNTHETIC_NOTE)
                    gr.Button("Create synthetic twins", interactive=False, elem_id="synthetic-create")

        fresh_chat = [card, chat, evidence_turns, evidence, session]
        find = (studio.find, [secret, query, panel], [twins, twin])
        for trigger in (sign_in.click, key_box.submit):
            trigger(
                studio.sign_in,
                key_box,
                [secret, welcome, main, key_row, panel],
                show_progress="hidden",
                **PRIVATE,
            ).success(lambda: "", None, key_box, **PRIVATE).then(*find, **PRIVATE)
        for trigger in (search.click, query.submit, panel.input):
            trigger(*find, **PRIVATE)
        sign_out.click(studio.sign_out, None, [secret, welcome, main, key_row], **QUIET)
        twin.change(studio.show, [secret, twin], fresh_chat, **PRIVATE)
        twins.select(studio.pick, None, twin, **PRIVATE)
        restart.click(studio.show, [secret, twin], fresh_chat, **PRIVATE)
        chat_inputs = [secret, twin, session, message, chat, evidence_turns]
        for trigger in (send.click, message.submit):
            trigger(studio.send, chat_inputs, [chat, evidence_turns, evidence, session, message], **PRIVATE)
        chat.select(studio.evidence_at, evidence_turns, evidence, **PRIVATE)
        ask.click(studio.interview, [secret, panel, question, limit], answers, **PRIVATE)
        upload.upload(studio.load_questionnaire, upload, questions, **PRIVATE)
        survey_outputs = [table, results, csv, summary]
        run.click(studio.run_survey, [secret, panel, survey_twins, questions], survey_outputs, **PRIVATE)
        strategy_inputs = [secret, panel, campaign_name, channel, text_a, price_a, text_b, price_b, segments]
        strategy_outputs = [strategy_summary, strategy_chart, rates, strategy_json]
        simulate.click(studio.simulate, strategy_inputs, strategy_outputs, **PRIVATE)
    return page
