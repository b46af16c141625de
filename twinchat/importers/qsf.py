"""Answer labels from a Qualtrics survey definition (.qsf), for importing its CSV export.

The export holds codes ("2"); the survey file says what each code meant ("No"). A question's column is its
``DataExportTag``; matrix rows are ``<tag>_<row>``. A code is the choice's recode value where the question
recodes, its choice id otherwise. Piped text (``${e://Field/...}``) is not a label, so its code stays.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twinchat.domain.readers import UnreadableInput

_TAGS = re.compile(r"<[^>]+>")
_ROW = re.compile(r"(.+)_(\d+)$")


def read_labels(path: Path) -> Callable[[str, str], str]:
    """``labels(column, code)``: the label of ``code`` in ``column``, or ``code`` itself when none is known."""
    try:
        survey = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableInput(f"{path}: not a readable Qualtrics survey file ({exc})") from None
    choices: dict[str, dict[str, str]] = {}
    scales: dict[str, dict[str, str]] = {}
    for element in survey.get("SurveyElements", []):
        payload = element.get("Payload")
        if (
            element.get("Element") != "SQ"
            or not isinstance(payload, dict)
            or not payload.get("DataExportTag")
        ):
            continue
        tag = str(payload["DataExportTag"])
        recode = {str(k): str(v) for k, v in (payload.get("RecodeValues") or {}).items()}
        choices[tag] = _codes(payload.get("Choices"), recode)
        if payload.get("Answers"):  # a matrix: rows are Choices, the scale is Answers
            scales[tag] = _codes(payload.get("Answers"), recode)

    def label(column: str, code: str) -> str:
        row = _ROW.fullmatch(column)
        if row and row.group(1) in scales:
            return scales[row.group(1)].get(code, code)
        return choices.get(column, {}).get(code, code)

    return label


def _codes(options: Any, recode: dict[str, str]) -> dict[str, str]:
    if isinstance(options, list):  # Qualtrics writes a list when ids are 1..n
        options = {str(i + 1): o for i, o in enumerate(options)}
    if not isinstance(options, dict):
        return {}
    out = {}
    for choice_id, option in options.items():
        display = option.get("Display", "") if isinstance(option, dict) else ""
        text = " ".join(_TAGS.sub(" ", str(display)).split())
        if text and "${" not in text:
            out[recode.get(str(choice_id), str(choice_id))] = text
    return out
