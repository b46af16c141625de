"""Imports declared by a mapping file instead of code: which column is the customer, which columns identify
them, how each row (or group of rows, or answered question) becomes an event.

A mapping is YAML (see twinchat/importers/mappings/ for the shipped ones and docs in README "Importing data").
Its parts, each optional except ``customer`` and ``event``:

- ``read``: ``format`` (csv or jsonl; by default from the file name, ``.gz`` allowed), ``questions_row`` (the
  row under the header, counted from 1, that holds each column's question, as Qualtrics exports have),
  ``skip_rows`` (rows that are not data).
- ``customer``: ``column`` and ``prefix`` (``gss-``: twin ids that cannot collide with another source's).
- ``identifiers``: kind -> column (``email: Email``), stitched into one twin (twinchat.domain.identity).
- ``columns``: column -> ``text`` | ``int`` | ``float`` | ``datetime`` (or ``{type, required}``); a value that
  does not parse is refused naming the file, line and column.
- ``skip``: rows left out on purpose, each ``{if: CONDITION, reason: TEXT}``, counted by reason.
- ``derive``: new values: ``{multiply: [A, B], abs: true}``, ``{lookup: COLUMN, values: {...}}``.
- ``group``: one event per ``by`` columns (and customer): ``item`` template joined by ``separator`` into
  ``{items}``, ``sum`` and ``collect`` of columns.
- ``unpivot``: one event per answered column (a survey in wide format): ``columns`` (``exclude``,
  ``exclude_matching``), ``questions`` (``header`` or a documentation ``file`` with ``key`` and ``text``
  columns), ``answers_from_qsf`` (value labels from a Qualtrics survey file), ``require_answer_matching`` (a row
  is a response only when some answer matches); ``questions`` may also list ``columns: {COLUMN: WORDING}``,
  and only those are imported. Templates then see ``{column}``, ``{question}``, ``{answer}``.
- ``event``: ``id``, ``text``, ``timestamp``, ``source``, ``kind``, ``attributes`` (name -> column or
  template) and ``variants`` (``{if: CONDITION, text, kind}``: the first that holds replaces them).

Templates are text with ``{name}`` or ``{name|filter}`` (filters: date, money, abs, int, lower, upper).
A condition is ``{column: NAME}`` with one of ``empty: true``, ``equals``, ``in``, ``startswith``, ``matches``.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from twinchat.domain.events import EventError, parse_timestamp
from twinchat.domain.identity import CUSTOMER_ID, KIND, Identifier, IdentityGraph, Resolution, normalize
from twinchat.domain.prompts import read_yaml
from twinchat.domain.readers import RawRecord, RowProblem, UnreadableInput, read_jsonl

SHIPPED = Path(__file__).resolve().parent / "mappings"
MAPPING_VERSION = 1
TYPES = ("text", "int", "float", "datetime")
FILTERS = ("date", "money", "abs", "int", "lower", "upper")
_PLACEHOLDER = re.compile(r"\{([^{}|]+)(?:\|([A-Za-z0-9_]+))?\}")
_CUSTOMER = "\x00customer\x00"

Known = Callable[[list[Identifier]], dict[Identifier, str]]


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the field."""


def shipped_mappings() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def load_mapping(name_or_path: str | Path) -> Mapping:
    """A shipped mapping by name (``online_retail``, ``gss``, ``twin2k_profile``, ``twin2k_study``) or a file."""
    path = Path(name_or_path)
    if not path.suffix and str(name_or_path) in shipped_mappings():
        path = shipped_mappings()[str(name_or_path)]
    if not path.is_file():
        raise MappingError(f"{name_or_path}: no such mapping file (shipped: {', '.join(shipped_mappings())})")
    data = read_yaml(path, MappingError, what="import mapping")
    return Mapping.parse(data, str(path))


@dataclass(frozen=True)
class Condition:
    column: str
    test: str
    operand: Any

    @classmethod
    def parse(cls, data: Any, where: str) -> Condition:
        if not isinstance(data, dict) or "column" not in data or len(data) != 2:
            raise MappingError(f"{where}: a condition is {{column: NAME, <test>: VALUE}}, got {data!r}")
        test = next(k for k in data if k != "column")
        if test not in ("empty", "equals", "in", "startswith", "matches"):
            raise MappingError(f"{where}: unknown test {test!r} (empty, equals, in, startswith, matches)")
        operand = data[test]
        if test == "matches":
            operand = _regex(operand, where)
        if test == "in":
            operand = {str(v) for v in _list(operand, where)}
        return cls(str(data["column"]), test, operand)

    def holds(self, values: dict[str, Any]) -> bool:
        value = values.get(self.column)
        text = "" if value is None else str(value)
        if self.test == "empty":
            return (text.strip() == "") == bool(self.operand)
        if self.test == "equals":
            return text == str(self.operand)
        if self.test == "in":
            return text in self.operand
        if self.test == "startswith":
            return text.startswith(str(self.operand))
        return bool(self.operand.search(text))


@dataclass(frozen=True)
class Variant:
    condition: Condition
    fields: dict[str, str]


@dataclass(frozen=True)
class Mapping:
    """A parsed, checked mapping file."""

    name: str
    path: str
    description: str
    read: dict[str, Any]
    customer_column: str
    customer_prefix: str
    identifiers: dict[str, str]
    phone_country_code: str | None
    columns: dict[str, tuple[str, bool]]
    skip: list[tuple[Condition, str]]
    derive: dict[str, dict[str, Any]]
    group: dict[str, Any] | None
    unpivot: dict[str, Any] | None
    event: dict[str, Any]
    variants: list[Variant]
    attributes: dict[str, str]

    @classmethod
    def parse(cls, data: Any, path: str) -> Mapping:
        if not isinstance(data, dict):
            raise MappingError(
                f"{path}: a mapping is a YAML object with customer and event, got {type(data).__name__}"
            )
        known = {"mapping", "name", "description", "read", "customer", "identifiers", "phone_country_code",
                 "columns", "skip", "derive", "group", "unpivot", "event"}  # fmt: skip
        unknown = set(data) - known
        if unknown:
            raise MappingError(
                f"{path}: unknown field(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
            )
        if data.get("mapping", MAPPING_VERSION) != MAPPING_VERSION:
            raise MappingError(
                f"{path}: mapping: version {data.get('mapping')!r}; this twinchat reads version 1"
            )
        customer = data.get("customer")
        if isinstance(customer, str):
            customer = {"column": customer}
        if not isinstance(customer, dict) or not isinstance(customer.get("column"), str):
            raise MappingError(
                f"{path}: customer: needs {{column: NAME}} (the column holding the customer id)"
            )
        event = data.get("event")
        if not isinstance(event, dict) or "text" not in event:
            raise MappingError(
                f"{path}: event: needs at least text (a template such as 'Bought {{Description}}')"
            )
        allowed = {"id", "text", "timestamp", "source", "kind", "attributes", "variants"}
        if set(event) - allowed:
            raise MappingError(f"{path}: event: unknown field(s) {', '.join(sorted(set(event) - allowed))}")
        identifiers = _dict(data.get("identifiers", {}), f"{path}: identifiers")
        for kind in identifiers:
            if not KIND.fullmatch(kind):
                raise MappingError(
                    f"{path}: identifiers: {kind}: an identifier kind is lower case letters, digits and _ "
                    "(e.g. email, phone)"
                )
        columns = {}
        for name, spec in _dict(data.get("columns", {}), f"{path}: columns").items():
            kind, required = (
                (spec, False)
                if isinstance(spec, str)
                else (spec.get("type", "text"), bool(spec.get("required")))
            )
            if kind not in TYPES:
                raise MappingError(f"{path}: columns: {name}: type {kind!r} is not one of {', '.join(TYPES)}")
            columns[name] = (kind, required)
        skip = []
        for i, rule in enumerate(_list(data.get("skip", []), f"{path}: skip")):
            where = f"{path}: skip[{i}]"
            if not isinstance(rule, dict) or "if" not in rule or "reason" not in rule:
                raise MappingError(f"{where}: needs if and reason")
            skip.append((Condition.parse(rule["if"], where), str(rule["reason"])))
        derive = _dict(data.get("derive", {}), f"{path}: derive")
        for name, rule in derive.items():
            if not isinstance(rule, dict) or not ({"multiply", "lookup"} & set(rule)):
                raise MappingError(
                    f"{path}: derive: {name}: needs multiply: [A, B] or lookup: COLUMN with values"
                )
        variants = [
            Variant(
                Condition.parse(v.get("if"), f"{path}: event: variants[{i}]"),
                {k: str(x) for k, x in v.items() if k != "if"},
            )
            for i, v in enumerate(_list(event.get("variants", []), f"{path}: event: variants"))
        ]
        group, unpivot = data.get("group"), data.get("unpivot")
        if group is not None and unpivot is not None:
            raise MappingError(f"{path}: group and unpivot cannot be combined")
        if group is not None and not isinstance(_dict(group, f"{path}: group").get("by"), list):
            raise MappingError(f"{path}: group: needs by: [COLUMN, ...]")
        if unpivot is not None:
            _check_unpivot(_dict(unpivot, f"{path}: unpivot"), path)
        mapping = cls(
            name=str(data.get("name") or Path(path).stem),
            path=path,
            description=str(data.get("description", "")),
            read=_dict(data.get("read", {}), f"{path}: read"),
            customer_column=customer["column"],
            customer_prefix=str(customer.get("prefix", "")),
            identifiers={str(k): str(v) for k, v in identifiers.items()},
            phone_country_code=None
            if data.get("phone_country_code") is None
            else str(data["phone_country_code"]),
            columns=columns,
            skip=skip,
            derive=derive,
            group=group,
            unpivot=unpivot,
            event={k: v for k, v in event.items() if k not in ("variants", "attributes")},
            variants=variants,
            attributes={
                str(k): str(v)
                for k, v in _dict(event.get("attributes", {}), f"{path}: event: attributes").items()
            },
        )
        for template in [*mapping.event.values(), *mapping.attributes.values()]:
            for _, flt in _PLACEHOLDER.findall(str(template)):
                if flt and flt not in FILTERS:
                    raise MappingError(f"{path}: event: unknown filter |{flt} (known: {', '.join(FILTERS)})")
        return mapping


def _check_unpivot(unpivot: dict[str, Any], path: str) -> None:
    questions = unpivot.get("questions", "header")
    if questions != "header" and not (
        isinstance(questions, dict)
        and ({"file", "key", "text"} <= set(questions) or isinstance(questions.get("columns"), dict))
    ):
        raise MappingError(
            f"{path}: unpivot: questions: 'header', {{columns: {{COLUMN: WORDING}}}}, "
            "or {file, key, text} (a documentation CSV)"
        )
    for key in ("exclude_matching", "require_answer_matching"):
        if key in unpivot:
            _regex(unpivot[key], f"{path}: unpivot: {key}")


@dataclass
class MappedImport:
    """Reads files with a mapping; ``records()`` yields records for TwinService.ingest_records.

    Identities are resolved over the whole import before any record comes out, so a customer whose first
    row carries only an email and a later row the email with a customer id is one twin from the start.
    """

    mapping: Mapping
    paths: Sequence[Path]
    known: Known = field(default=lambda ids: {})  # identifiers already recorded: the registry's
    existing: Callable[[list[str]], set[str]] = field(default=lambda twin_ids: set())  # which twins exist
    identity_map: Path | None = None
    customers: int | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    resolution: Resolution = field(default_factory=Resolution)
    rows_read: int = 0

    def records(self) -> Iterator[RawRecord | RowProblem]:
        built: list[tuple[RawRecord, list[Identifier]]] = []
        problems: list[RowProblem] = []
        graph = IdentityGraph()
        if self.identity_map is not None:
            problems.extend(_read_identity_map(self.identity_map, graph, self.mapping.phone_country_code))
        for path in self.paths:
            for item in _MappedFile(self.mapping, path, self).events():
                if isinstance(item, RowProblem):
                    problems.append(item)
                else:
                    graph.link(item[1])
                    built.append(item)
        ids = [i for group in graph.groups() for i in group]
        self.resolution = graph.resolve(self._known(ids), customer_twin=self._twin_of_customer)
        yield from problems
        out: list[RawRecord] = []
        for raw, identifiers in built:
            conflict = self.resolution.conflicts.get(identifiers[0])
            if conflict is not None:
                named = ", ".join(f"{k}={v}" for k, v in identifiers)
                yield RowProblem(
                    raw.file,
                    raw.line,
                    "identifiers",
                    f"{named} belong to twins {' and '.join(conflict)}; fix the identity map or erase one twin",
                )
                continue
            twin = self.resolution.twins[identifiers[0]]
            record = {
                k: v.replace(_CUSTOMER, twin) if isinstance(v, str) else v for k, v in raw.record.items()
            }
            record["customer_id"] = twin
            out.append(RawRecord(raw.file, raw.line, record))
        if self.customers is not None:
            per_twin = Counter(r.record["customer_id"] for r in out)
            keep = {t for t, _ in sorted(per_twin.items(), key=lambda kv: (-kv[1], kv[0]))[: self.customers]}
            dropped = sum(1 for r in out if r.record["customer_id"] not in keep)
            if dropped:
                self.skipped["customer not among the selected"] += dropped
            out = [r for r in out if r.record["customer_id"] in keep]
        yield from out

    def identifiers_by_twin(self, twins: set[str]) -> dict[str, list[Identifier]]:
        """The identifiers of these twins (those an import stored events for), to record in the registry."""
        return {t: ids for t, ids in self.resolution.identifiers_of().items() if t in twins}

    def _twin_of_customer(self, customer: str) -> str:
        return f"{self.mapping.customer_prefix}{customer}"

    def _known(self, ids: list[Identifier]) -> dict[Identifier, str]:
        """Identifiers recorded for a twin, and customer ids whose twin exists (made by a plain ingest)."""
        found = dict(self.known(ids))
        customers = {
            self._twin_of_customer(v): (k, v) for k, v in ids if k == CUSTOMER_ID and (k, v) not in found
        }
        for twin in self.existing(list(customers)):
            found[customers[twin]] = twin
        return found


class _MappedFile:
    """One file read with one mapping."""

    def __init__(self, mapping: Mapping, path: Path, run: MappedImport) -> None:
        self.m, self.path, self.run, self.name = mapping, path, run, str(path)
        self.header_questions: dict[str, str] = {}  # from read.questions_row, once the CSV reaches it

    def events(self) -> Iterator[tuple[RawRecord, list[Identifier]] | RowProblem]:
        rows = self._typed_rows()
        if self.m.group is not None:
            yield from self._grouped(rows)
        elif self.m.unpivot is not None:
            yield from self._unpivoted(rows)
        else:
            for item in rows:
                yield item if isinstance(item, RowProblem) else self._event(*item)

    # --- reading -----------------------------------------------------------------------------------------

    def _typed_rows(self) -> Iterator[Any]:
        for item in self._raw_rows():
            self.run.rows_read += 1
            if isinstance(item, RowProblem):
                yield item
                continue
            line, row = item
            reason = next((why for cond, why in self.m.skip if cond.holds(row)), None)
            if reason is not None:
                self.run.skipped[reason] += 1
                continue
            try:
                values = self._typed(row)
                ids = self._identifiers(row)
            except EventError as exc:
                yield RowProblem(self.name, line, exc.field, exc.reason)
                continue
            if not ids:
                yield RowProblem(self.name, line, self.m.customer_column, "is empty: no customer identifier")
                continue
            yield line, values, ids

    def _raw_rows(self) -> Iterator[tuple[int, dict[str, Any]] | RowProblem]:
        if not self.path.is_file():
            raise UnreadableInput(f"{self.path}: no such file")
        fmt = self.m.read.get("format") or ("jsonl" if ".jsonl" in self.path.suffixes else "csv")
        try:
            if fmt == "jsonl":
                for item in read_jsonl(self.path):
                    yield item if isinstance(item, RowProblem) else (item.line or 0, item.record)
                return
            with self._open() as handle:
                yield from self._csv(handle)
        except UnicodeDecodeError as exc:
            raise UnreadableInput(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except (OSError, EOFError, csv.Error) as exc:
            raise UnreadableInput(f"{self.path}: cannot read it ({exc})") from None

    def _open(self) -> io.TextIOBase:
        if self.path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(self.path), encoding="utf-8-sig", newline="")  # type: ignore[return-value]
        return self.path.open(encoding="utf-8-sig", newline="")  # type: ignore[return-value]

    def _csv(self, handle: Any) -> Iterator[tuple[int, dict[str, str]]]:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = {c for c, (_, required) in self.m.columns.items() if required} - set(header)
        who = [self.m.customer_column, *self.m.identifiers.values()]
        if not set(who) & set(header):
            missing.add(" or ".join(who))
        if missing:
            raise UnreadableInput(
                f"{self.path}: lacks the column(s) {', '.join(sorted(missing))} that mapping {self.m.name} needs"
            )
        questions_row = self.m.read.get("questions_row")
        skip_rows = set(self.m.read.get("skip_rows", []))
        for number, row in enumerate(reader, start=1):  # rows, not lines: a quoted field may span lines
            line = reader.line_num
            if number == questions_row:
                self.header_questions = {
                    k: " ".join((v or "").split()) for k, v in row.items() if isinstance(k, str)
                }
                continue
            if number in skip_rows:
                continue
            yield line, {k: (v or "") for k, v in row.items() if isinstance(k, str)}

    def _typed(self, row: dict[str, Any]) -> dict[str, Any]:
        values = {k: " ".join(v.split()) if isinstance(v, str) else v for k, v in row.items()}
        for name, (kind, required) in self.m.columns.items():
            raw = values.get(name, "")
            if raw == "" or raw is None:
                if required:
                    raise EventError(name, "is empty and the mapping requires it")
                values[name] = None
                continue
            values[name] = _convert(name, raw, kind)
        for name, rule in self.m.derive.items():
            values[name] = _derive(name, rule, values)
        return values

    def _identifiers(self, row: dict[str, Any]) -> list[Identifier]:
        found = []
        customer = row.get(self.m.customer_column)
        if customer not in (None, ""):
            found.append((CUSTOMER_ID, normalize(CUSTOMER_ID, customer)))
        for kind, column in self.m.identifiers.items():
            value = row.get(column)
            if value not in (None, ""):
                try:
                    found.append((kind, normalize(kind, value, country_code=self.m.phone_country_code)))
                except EventError as exc:
                    raise EventError(column, exc.reason) from None
        return found

    # --- shaping -----------------------------------------------------------------------------------------

    def _event(
        self, line: int, values: dict[str, Any], ids: list[Identifier]
    ) -> tuple[RawRecord, list[Identifier]] | RowProblem:
        context = dict(values)
        context.update(
            line=line,
            file_name=self.path.name,
            file_dir=self.path.parent.name,
            file_dir2=self.path.parent.parent.name,
        )
        context["customer"] = (
            _CUSTOMER  # the twin id, known once identities are resolved over the whole import
        )
        spec = dict(self.m.event)
        for variant in self.m.variants:
            if variant.condition.holds(context):
                spec.update(variant.fields)
                break
        try:
            record: dict[str, Any] = {"customer_id": "?"}
            for key in ("text", "source", "kind"):
                if key in spec:
                    record[key] = _render(str(spec[key]), context)
            if "id" in spec:
                record["event_id"] = _render(str(spec["id"]), context)
            if "timestamp" in spec:
                stamp = (
                    context.get(spec["timestamp"])
                    if spec["timestamp"] in context
                    else _render(spec["timestamp"], context)
                )
                record["timestamp"] = stamp.isoformat() if isinstance(stamp, datetime) else stamp
            for name, source in self.m.attributes.items():
                value = context.get(source) if source in context else _render(source, context)
                if value not in (None, ""):
                    record[name] = value.isoformat() if isinstance(value, datetime) else value
        except EventError as exc:
            return RowProblem(self.name, line, exc.field, exc.reason)
        return RawRecord(self.name, line, record), ids

    def _grouped(self, rows: Iterator[Any]) -> Iterator[tuple[RawRecord, list[Identifier]] | RowProblem]:
        group = self.m.group or {}
        groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any], list[Identifier]]]] = {}
        for item in rows:
            if isinstance(item, RowProblem):
                yield item
                continue
            line, values, ids = item
            key = (tuple(ids), *(values.get(c) for c in group["by"]))
            groups.setdefault(key, []).append(item)
        for members in groups.values():
            line, first, ids = members[0]
            context = dict(first)
            try:
                context["items"] = str(group.get("separator", "; ")).join(
                    _render(str(group.get("item", "")), v) for _, v, _ in members
                )
            except EventError as exc:
                yield RowProblem(self.name, line, exc.field, exc.reason)
                continue
            for name, column in (group.get("sum") or {}).items():
                context[name] = round(sum(float(v.get(column) or 0) for _, v, _ in members), 2)
            for name, column in (group.get("collect") or {}).items():
                context[name] = [v.get(column) for _, v, _ in members]
            context["n_items"] = len(members)
            yield self._event(line, context, ids)

    def _unpivoted(self, rows: Iterator[Any]) -> Iterator[tuple[RawRecord, list[Identifier]] | RowProblem]:
        spec = self.m.unpivot or {}
        questions = self._questions(spec)
        labels = self._answer_labels(spec)
        exclude = set(spec.get("exclude", [])) | {self.m.customer_column, *self.m.identifiers.values()}
        matching = _regex(spec["exclude_matching"], "") if "exclude_matching" in spec else None
        required = _regex(spec["require_answer_matching"], "") if "require_answer_matching" in spec else None
        for item in rows:
            if isinstance(item, RowProblem):
                yield item
                continue
            line, values, ids = item
            wording = questions if questions is not None else self.header_questions
            answers = {
                column: str(value).strip()
                for column, value in values.items()
                if column in wording
                and column not in exclude
                and not (matching and matching.search(column))
                and value not in (None, "")
                and str(value).strip()
                and column not in self.m.derive
            }
            if required is not None and not any(required.search(v) for v in answers.values()):
                self.run.skipped["no answer in this row (a non-response)"] += 1
                continue
            for column, answer in answers.items():
                context = dict(values, column=column, question=wording[column], answer=labels(column, answer))
                yield self._event(line, context, ids)

    def _questions(self, spec: dict[str, Any]) -> dict[str, str] | None:
        source = spec.get("questions", "header")
        if source == "header":
            return None
        if "columns" in source:
            return {str(k): str(v) for k, v in source["columns"].items()}
        doc = _beside(self.path, source["file"])
        strip = _regex(source["strip"], "") if "strip" in source else None
        drop = source.get("exclude_if", [])
        conditions = [Condition.parse(c, f"{self.m.path}: unpivot: questions: exclude_if") for c in drop]
        wording = {}
        try:
            with doc.open(encoding="utf-8-sig", newline="") as handle:
                for row in csv.DictReader(handle):
                    text = (row.get(source["text"]) or "").strip()
                    if not text or text in ("None", "nan") or any(c.holds(row) for c in conditions):
                        continue
                    wording[row[source["key"]]] = strip.sub("", text) if strip else text
        except (OSError, KeyError) as exc:
            raise UnreadableInput(f"{doc}: cannot read the question documentation ({exc})") from None
        return wording

    def _answer_labels(self, spec: dict[str, Any]) -> Callable[[str, str], str]:
        if "answers_from_qsf" not in spec:
            return lambda column, answer: answer
        from twinchat.importers.qsf import read_labels

        labels = read_labels(_beside(self.path, spec["answers_from_qsf"]))
        return lambda column, answer: labels(column, answer)


def _beside(data_file: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else data_file.parent / path


def _read_identity_map(path: Path, graph: IdentityGraph, country_code: str | None) -> Iterator[RowProblem]:
    """An identity map: a CSV whose columns are identifier kinds; each row's identifiers are one person."""
    if not path.is_file():
        raise UnreadableInput(f"{path}: no such identity map")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            ids = []
            for kind, value in row.items():
                if not kind or value in (None, "") or not str(value).strip():
                    continue
                try:
                    ids.append((kind.strip(), normalize(kind.strip(), value, country_code=country_code)))
                except EventError as exc:
                    yield RowProblem(str(path), reader.line_num, exc.field, exc.reason)
                    ids = []
                    break
            if ids:
                graph.link(ids)


def _convert(name: str, raw: Any, kind: str) -> Any:
    if kind == "text":
        return str(raw)
    try:
        if kind == "int":
            number = float(raw)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind == "float":
            return float(raw)
    except (TypeError, ValueError):
        whole = "whole " if kind == "int" else ""
        raise EventError(name, f"{raw!r} is not a {whole}number") from None
    try:
        stamp = parse_timestamp(raw)
    except EventError:
        raise EventError(name, f"{raw!r} is not a date like 2011-03-04 10:15:00 (ISO 8601)") from None
    if stamp is None:
        raise EventError(name, "is empty")
    return stamp.replace(tzinfo=None) if kind == "datetime" else stamp


def _derive(name: str, rule: dict[str, Any], values: dict[str, Any]) -> Any:
    if "multiply" in rule:
        result = 1.0
        for column in rule["multiply"]:
            value = values.get(column)
            if value is None:
                return None
            result *= float(value)
        return abs(result) if rule.get("abs") else result
    key = values.get(rule["lookup"])
    table = {str(k): v for k, v in (rule.get("values") or {}).items()}
    return table.get(str(key), rule.get("default", key))


def _render(template: str, context: dict[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, flt = match.group(1).strip(), match.group(2)
        if name not in context:
            raise EventError(name, "is not a column of this file nor a derived value the mapping names")
        return _format(context[name], flt, name)

    return _PLACEHOLDER.sub(substitute, template)


def _format(value: Any, flt: str | None, name: str) -> str:
    if value is None:
        return ""
    if flt in ("money", "abs", "int") and not isinstance(value, int | float):
        raise EventError(name, f"{value!r} is not a number, so |{flt} cannot format it")
    if flt == "date":
        return value.date().isoformat() if isinstance(value, datetime) else str(value)[:10]
    if flt == "money":
        return f"{value:.2f}"
    if flt == "abs":
        return str(abs(value))
    if flt == "int":
        return str(int(value))
    if flt == "lower":
        return str(value).lower()
    if flt == "upper":
        return str(value).upper()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _regex(pattern: Any, where: str) -> re.Pattern[str]:
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        raise MappingError(f"{where}: {pattern!r} is not a regular expression ({exc})") from None


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MappingError(f"{where}: expected a mapping of names to values, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise MappingError(f"{where}: expected a list, got {type(value).__name__}")
    return value
