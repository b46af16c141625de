"""The GSS panel (one row per person and wave, answers as text labels) as survey events.

Each answered question of each wave becomes one event: ``source: survey``, text ``Q: <wording> A: <label>``,
the wave's year as timestamp, and attributes ``question_id`` (``gss:<variable>``), ``question``, ``answer``,
``wave`` and ``variable``, so structured answers can find every twin's answer to the same question.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinchat.domain.readers import RawRecord, UnreadableInput

WAVE_YEARS = {1: 2006, 2: 2008, 3: 2010}
PROFILE_FIELDS = ("age", "sex", "race", "degree", "marital", "region", "relig", "income", "born", "wrkstat")
# Interview and sampling administration, ids, weights and dates: never questions about the person.
ADMIN_VARIABLES = frozenset(
    {
        "firstid",
        "wave",
        "id",
        "year",
        "ballot",
        "form",
        "version",
        "mode",
        "spaneng",
        "feeused",
        "consent",
        "coop",
        "comprend",
        "rvisitor",
        "sampcode",
        "sample",
        "samptype",
        "vstrat",
        "vpsu",
        "oversamp",
        "formwt",
        "dateintv",
        "intage",
        "intsex",
        "intethn",
        "intyrs",
        "intid",
        "issp",
        "phase",
        "lngthinv",
        "respnum",
    }
)
ADMIN_WORDS = ("ballot", "questionnaire", "interview", "weight", "sampl", "consent", "incentive", "date of")
_LETTER = re.compile(r"[A-Za-z]")
_NUMBERING = re.compile(r"^\s*[A-Z]?\d+[a-z]?\.\s+")


@dataclass(frozen=True)
class GssPanel:
    """The panel as strings (pandas), with question wordings from the variable documentation."""

    rows: Any  # pandas.DataFrame: firstid, wave, one column per variable
    wording: dict[str, str]
    labels: dict[str, str]
    path: Path

    @classmethod
    def load(cls, panel: Path, doc: Path) -> GssPanel:
        import pandas as pd

        for path in (panel, doc):
            if not path.is_file():
                raise UnreadableInput(f"{path}: no such file")
        try:
            # Only empty cells are missing: "None" is an answer (no religion), which pandas would drop by default.
            rows = pd.read_csv(panel, dtype=str, low_memory=False, keep_default_na=False, na_values=[""])
            documentation = pd.read_csv(doc, dtype=str)
        except (ValueError, OSError) as exc:
            raise UnreadableInput(f"{panel}: cannot read the GSS panel ({exc})") from None
        for name, frame, needed in (
            (panel, rows, {"firstid", "wave"}),
            (doc, documentation, {"variable", "var_text"}),
        ):
            missing = needed - set(frame.columns)
            if missing:
                raise UnreadableInput(f"{name}: lacks the column(s) {', '.join(sorted(missing))}")
        rows["wave"] = pd.to_numeric(rows["wave"], errors="coerce").astype("Int64")
        wording, labels = {}, {}
        for record in documentation.to_dict("records"):
            text = str(record.get("var_text") or "").strip()
            if text and text != "None" and text != "nan":
                wording[record["variable"]] = _NUMBERING.sub("", text)
            labels[record["variable"]] = str(record.get("var_doc_label") or "")
        return cls(rows, wording, labels, panel)

    def is_administrative(self, variable: str) -> bool:
        label = self.labels.get(variable, "").lower()
        return (
            variable in ADMIN_VARIABLES
            or variable.startswith(("wt", "samp"))
            or any(w in label for w in ADMIN_WORDS)
        )

    def row_answers(self, row: Mapping[str, Any]) -> dict[str, str]:
        """A row's answers, variable to label; empty when the person did not take part in that wave.

        Non-respondents' rows still carry administrative fields and numeric placeholder codes (0, -1) in
        hundreds of columns. Answers in this format are text labels, so a row counts as a response only when
        at least one documented, non-administrative question has a lettered answer.
        """
        answers = {
            k: v.strip()
            for k, v in row.items()
            if isinstance(v, str) and v.strip() and k in self.wording and not self.is_administrative(k)
        }
        return answers if any(_LETTER.search(v) for v in answers.values()) else {}

    def records(
        self,
        *,
        persons: Collection[str],
        variables: Collection[str],
        waves: Collection[int] = (1, 2),
        withheld: Mapping[str, Collection[str]] | None = None,
        id_prefix: str = "gss-",
    ) -> Iterator[RawRecord]:
        """Survey events of these persons, variables and waves, without each person's withheld variables."""
        withheld = withheld or {}
        wanted = [v for v in variables if v in self.rows.columns and v in self.wording]
        subset = self.rows[self.rows["firstid"].isin(set(persons)) & self.rows["wave"].isin(list(waves))]
        for line, row in zip(subset.index, subset.to_dict("records"), strict=True):
            person, wave = row["firstid"], int(row["wave"])
            hidden = withheld.get(person, ())
            answers = self.row_answers(row)
            for variable in wanted:
                label = answers.get(variable)
                if label is None or variable in hidden:
                    continue
                yield RawRecord(
                    str(self.path),
                    int(line) + 2,
                    survey_record(f"{id_prefix}{person}", variable, self.wording[variable], label, wave),
                )


def survey_record(customer_id: str, variable: str, wording: str, label: str, wave: int) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "event_id": f"{customer_id}-w{wave}-{variable}",
        "text": f"Q: {wording} A: {label}",
        "timestamp": f"{WAVE_YEARS.get(wave, 2000 + wave)}-01-01",
        "source": "survey",
        "kind": "profile" if variable in PROFILE_FIELDS else "answer",
        "question_id": f"gss:{variable}",
        "question": wording,
        "answer": label,
        "wave": wave,
        "variable": variable,
    }
