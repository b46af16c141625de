"""Bodies of the OpenAI-compatible endpoints, as the OpenAI chat completions API spells them.

Only what a twin can honour is read; the other common parameters are accepted and ignored, so that clients
written for OpenAI (the openai SDK, LangChain's ChatOpenAI) send their usual requests unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from twinchat.api.schemas import PURPOSE_HELP, CitationOut, PurposeIn

IGNORED = "Accepted and ignored: the twin's sampling and answer length are the server's (TWINCHAT_*)."


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_calls, refusal, ...

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="system and developer messages are accepted and ignored: a twin's instructions are its "
        "persona prompt, which keeps it to its customer's history."
    )
    content: str | list[dict[str, Any]] | None = Field(
        default=None, description='A string, or a list of text parts `{"type": "text", "text": "..."}`.'
    )

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        for part in value if isinstance(value, list) else []:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"twins read text parts only, not a {part.get('type')!r} part")
        return value

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part["text"] for part in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """`POST /v1/chat/completions`: the last user message is the question, earlier turns the conversation."""

    model_config = ConfigDict(extra="ignore")  # presence_penalty, logit_bias, metadata, store, ...

    model: str = Field(
        examples=["twin:C-100"], description="`twin:<twin id>`, as `GET /v1/models` lists them."
    )
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = Field(
        default=False, description="`chat.completion.chunk` server-sent events, then [DONE]."
    )
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, description="A twin gives one answer: only 1.")
    purpose: PurposeIn | None = Field(
        default=None, description=f"twinchat's own (`extra_body`). {PURPOSE_HELP}"
    )
    temperature: float | None = Field(default=None, description=IGNORED)
    top_p: float | None = Field(default=None, description=IGNORED)
    max_tokens: int | None = Field(default=None, description=IGNORED)
    max_completion_tokens: int | None = Field(default=None, description=IGNORED)
    seed: int | None = Field(default=None, description=IGNORED)
    stop: str | list[str] | None = Field(default=None, description=IGNORED)
    user: str | None = Field(default=None, description="Accepted and ignored: the audit names the API key.")
    tools: list[dict[str, Any]] | None = Field(
        default=None, description="Twins call no tools: empty or absent."
    )
    response_format: dict[str, Any] | None = Field(default=None, description="Twins answer in text only.")

    @field_validator("n")
    @classmethod
    def _one_answer(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"a twin gives one answer: n must be 1, not {value}")
        return value

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            raise ValueError("twins call no tools; send no `tools`")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value and value.get("type", "text") != "text":
            raise ValueError(f"twins answer in text only, not {value.get('type')!r}")
        return value


class TwinchatExtras(BaseModel):
    """What twinchat adds to an OpenAI response; OpenAI clients ignore it, and can read it."""

    twin_id: str
    citations: list[CitationOut] = Field(description="The customer's events the answer is grounded in.")
    abstained: bool = Field(description="True when the history did not answer the question.")
    simulated: bool = Field(default=True, description="Always true: what the customer would likely say.")
    model: str = Field(description="The LLM that wrote the answer.")


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class Usage(BaseModel):
    """Counted with the twin's token counter over the messages sent and the answer (not the evidence)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: None = None
    twinchat: TwinchatExtras


class ModelOut(BaseModel):
    id: str = Field(examples=["twin:C-100"])
    object: Literal["model"] = "model"
    created: int
    owned_by: Literal["twinchat"] = "twinchat"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str = Field(
        description="twinchat's error: unauthorized, forbidden, no_consent, model_not_found, invalid"
    )


class OpenAIErrorOut(BaseModel):
    error: OpenAIErrorBody
