"""Persona prompting: turn a question and retrieved memories into messages that fit the model's context.

Two guarantees live here rather than in the LLM, because a small model cannot be trusted with them:
- history text is data: it is flattened and stripped of anything that could pose as a chat control token,
  a new evidence line or a question, before it reaches the prompt;
- the prompt fits the context window: evidence is added best first until the token budget is spent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from twinchat.domain.models import Citation, Memory, Message
from twinchat.domain.prompts import PromptTemplate
from twinchat.ports import TokenCounter

# Chat-template control sequences of common model families (ChatML, Llama, Mistral, Gemma, Phi).
_CONTROL = re.compile(
    r"<\|[^|>]{0,40}\|>|</?s>|\[/?INST\]|<<\/?SYS>>|<start_of_turn>|<end_of_turn>|<\|?endoftext\|?>",
    re.IGNORECASE,
)
# Things that would let a history item impersonate the prompt's own structure.
_MARKER = re.compile(r"\[(\s*E\d+(?:\s*,\s*E\d+)*\s*)\]", re.IGNORECASE)
_STRUCTURE = re.compile(r"\bQUESTION\s*:|\bMY\s+HISTORY\b", re.IGNORECASE)
_CITATION = re.compile(r"\[\s*(E\d+(?:\s*,\s*E\d+)*)\s*\]")
MAX_ITEM_TOKENS = 120


def sanitize(text: str) -> str:
    """Make a piece of history safe to quote inside the prompt: one line, no control or structure tokens."""
    text = _CONTROL.sub(" ", text)
    text = _MARKER.sub(lambda m: f"({m.group(1).strip()})", text)
    text = _STRUCTURE.sub(lambda m: m.group(0).replace(":", " -") if ":" in m.group(0) else "my past", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class EvidenceItem:
    alias: str
    memory: Memory
    text: str
    date: str
    source: str


@dataclass(frozen=True)
class PersonaPrompt:
    messages: list[Message]
    evidence: list[EvidenceItem]
    prompt_tokens: int


class PersonaPrompter:
    """Builds the messages for one question.

    >>> from twinchat.testing import WordCounter
    >>> from twinchat.domain.prompts import PromptTemplate
    >>> t = PromptTemplate("p", 1, {"system": "I am {{ twin_id }}", "user": "{{ question }}", "abstain": "?"})
    >>> PersonaPrompter(t, WordCounter(), context_tokens=600, answer_tokens=100).build("c1", "Hi?", []).messages[1]
    Message(role='user', content='Hi?')
    """

    def __init__(
        self, template: PromptTemplate, counter: TokenCounter, *, context_tokens: int, answer_tokens: int
    ):
        self.template = template
        self.counter = counter
        self.context_tokens = context_tokens
        self.answer_tokens = answer_tokens

    @property
    def abstain_text(self) -> str:
        return self.template.render("abstain")

    def build(
        self,
        twin_id: str,
        question: str,
        memories: Sequence[Memory],
        *,
        conversation: Sequence[Message] = (),
        summary: str = "",
    ) -> PersonaPrompt:
        """The messages for one question; ``summary`` is the twin's persona summary (its profile), if any."""
        # The summary is derived from history, so it is data too: sanitized like any evidence item.
        summary = self.counter.truncate(sanitize(summary), 2 * MAX_ITEM_TOKENS)
        system = self.template.render("system", twin_id=sanitize(twin_id), summary=summary)
        # Reserve the answer and a margin: tiktoken counts approximate the local model's own tokenizer, and
        # chat templates add a few tokens per message.
        budget = int((self.context_tokens - self.answer_tokens) * 0.85) - 8 * (len(conversation) + 2)
        question = self.counter.truncate(sanitize(question), max(budget // 4, 16))
        fixed = self.counter.count(system) + self.counter.count(self._user([], question))
        history = self._fit_conversation(conversation, budget - fixed - 100)
        remaining = budget - fixed - sum(self.counter.count(m.content) for m in history)

        evidence: list[EvidenceItem] = []
        for memory in memories:
            item = self._item(len(evidence) + 1, memory)
            cost = self.counter.count(f"[{item.alias}] {item.date} {item.source}: {item.text}\n")
            if cost > remaining:
                break
            evidence.append(item)
            remaining -= cost
        user = self._user(evidence, question)
        messages = [Message("system", system), *history, Message("user", user)]
        used = sum(self.counter.count(m.content) for m in messages)
        return PersonaPrompt(messages, evidence, used)

    def citations(self, answer: str, evidence: Sequence[EvidenceItem]) -> tuple[str, list[Citation]]:
        """Map the [E1] markers of an answer back to event ids, and remove them from the text.

        When the model cited nothing, every evidence item it was shown is returned: that is what the answer
        was generated from, and claiming less would hide it.
        """
        by_alias = {item.alias: item for item in evidence}
        cited: list[EvidenceItem] = []
        for group in _CITATION.findall(answer):
            for alias in re.split(r"\s*,\s*", group):
                item = by_alias.get(alias.upper())
                if item is not None and item not in cited:
                    cited.append(item)
        clean = " ".join(_CITATION.sub("", answer).split()).replace(" .", ".").replace(" ,", ",")
        chosen = cited or list(evidence)
        return clean, [Citation(i.memory.event.event_id, i.memory.event.text, i.memory.score) for i in chosen]

    def _item(self, number: int, memory: Memory) -> EvidenceItem:
        event = memory.event
        text = self.counter.truncate(sanitize(event.text), MAX_ITEM_TOKENS)
        date = event.timestamp.date().isoformat() if event.timestamp else "undated"
        return EvidenceItem(f"E{number}", memory, text, date, sanitize(event.source))

    def _user(self, evidence: Sequence[EvidenceItem], question: str) -> str:
        return self.template.render("user", evidence=evidence, question=question)

    def _fit_conversation(self, conversation: Sequence[Message], budget: int) -> list[Message]:
        """Keep the most recent turns of a conversation that fit half the budget."""
        kept: list[Message] = []
        spent = 0
        for message in reversed(conversation):
            cost = self.counter.count(message.content)
            if spent + cost > budget // 2:
                break
            kept.append(message)
            spent += cost
        return list(reversed(kept))
