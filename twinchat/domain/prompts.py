"""Prompt templates are data: YAML files in prompts/, rendered strictly so a missing variable fails loudly."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import yaml


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    parts: dict[str, str]

    def render(self, part: str, **variables: Any) -> str:
        if part not in self.parts:
            raise PromptError(f"prompt '{self.name}' has no part '{part}' (it has {', '.join(self.parts)})")
        try:
            return _compiled(self.parts[part]).render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt '{self.name}' part '{part}': {exc.message}") from None


def read_yaml(path: Path, error: type[ValueError], *, what: str) -> Any:
    """A YAML data file's content; a missing or malformed file raises ``error`` naming the file."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {exc}") from None


def load_prompt(prompts_dir: Path, name: str, *, required: tuple[str, ...] = ()) -> PromptTemplate:
    """Load prompts_dir/name.yaml, checking it has a version and every required part."""
    path = prompts_dir / f"{name}.yaml"
    data = read_yaml(path, PromptError, what="prompt file (set TWINCHAT_PROMPTS_DIR?)")
    if not isinstance(data, dict) or not isinstance(data.get("version"), int):
        raise PromptError(f"{path}: expected a mapping with an integer 'version'")
    parts = {k: v for k, v in data.items() if k != "version"}
    missing = [p for p in required if not isinstance(parts.get(p), str)]
    if missing:
        raise PromptError(f"{path}: missing text part(s) {', '.join(missing)}")
    for part, text in parts.items():
        if isinstance(text, str):
            try:
                _environment().parse(text)
            except jinja2.TemplateSyntaxError as exc:
                raise PromptError(f"{path}: part '{part}' line {exc.lineno}: {exc.message}") from None
    return PromptTemplate(name, data["version"], parts)


@cache
def _compiled(text: str) -> jinja2.Template:
    # Compiling costs about 10 ms; a template is rendered per twin per ingest batch and per question.
    return _environment().from_string(text)


@cache
def _environment() -> jinja2.Environment:
    # Prompts are plain text, not HTML: no autoescape, but undefined variables are errors.
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)
