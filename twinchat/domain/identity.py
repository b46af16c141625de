"""Identity resolution: records of one customer under several identifiers (customer id, email, phone) become
one twin.

Identifiers that occur together (in one record, or in one row of an identity map) belong to the same person;
the connected groups of that graph are people. A group takes the twin already holding one of its identifiers,
or a new twin named after its customer id (or, with none, a digest of its first identifier, so that an email
address never becomes a twin id that logs and audits would repeat). A group whose identifiers already belong to
two twins is a conflict: its records are refused, never merged silently.

>>> graph = IdentityGraph()  # identifiers go in normalized (see normalize)
>>> graph.link([("customer_id", "17850"), ("email", normalize("email", "Ann@Example.com "))])
>>> graph.link([("email", "ann@example.com"), ("phone", normalize("phone", "+44 20 7946 0958"))])
>>> resolution = graph.resolve(known={})
>>> resolution.twin_for(("phone", "+442079460958"))
'17850'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from twinchat.domain.events import MAX_ID_CHARS, EventError

Identifier = tuple[str, str]  # (kind, normalized value)

CUSTOMER_ID = "customer_id"
KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_JUNK = re.compile(r"[\s().\-/]")


def normalize(kind: str, value: object, *, country_code: str | None = None) -> str:
    """The canonical form of an identifier, or EventError naming the kind when the value cannot be one.

    Emails are trimmed and lower-cased. Phones keep their digits with a leading +; a national number
    (leading 0) takes ``country_code`` when one is given, so "020 7946 0958" and "+44 20 7946 0958" meet.
    Customer ids are trimmed; "17850.0" from a spreadsheet is 17850.
    """
    if not KIND.fullmatch(kind):
        raise EventError(kind, "an identifier kind is lower case letters, digits and _ (e.g. email, phone)")
    text = str(value).strip()
    if "\x00" in text:
        raise EventError(kind, "contains a NUL character")
    if kind == "email":
        text = text.lower()
        if not _EMAIL.fullmatch(text):
            raise EventError(kind, f"{text!r} is not an email address")
    elif kind == "phone":
        text = _phone(text, country_code, kind)
    elif re.fullmatch(r"\d+\.0", text):
        text = text[:-2]
    if not text:
        raise EventError(kind, "is empty")
    if len(text) > MAX_ID_CHARS:
        raise EventError(kind, f"{len(text)} characters; an identifier has at most {MAX_ID_CHARS}")
    return text


def _phone(text: str, country_code: str | None, kind: str) -> str:
    compact = _PHONE_JUNK.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    elif compact.startswith("0") and country_code:
        compact = f"+{country_code.lstrip('+')}{compact[1:]}"
    digits = compact[1:] if compact.startswith("+") else compact
    if not digits.isdigit() or not 7 <= len(digits) <= 15:
        raise EventError(kind, f"{text!r} is not a phone number (7 to 15 digits, optionally +country code)")
    return compact


def masked(kind: str, value: str) -> str:
    """An identifier shown to someone who may know that it exists but not what it is (a researcher).

    >>> masked("email", "ann.lee@example.com"), masked("phone", "+442079460958"), masked("customer_id", "17850")
    ('a***@example.com', '+44*******958', '17850')
    """
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if kind == "phone":
        return value[:3] + "*" * max(len(value) - 6, 0) + value[-3:]
    return value if kind == CUSTOMER_ID else value[:1] + "***"


@dataclass
class Resolution:
    """Which twin each identifier belongs to, and the groups that could not be resolved."""

    twins: dict[Identifier, str] = field(default_factory=dict)
    conflicts: dict[Identifier, list[str]] = field(
        default_factory=dict
    )  # identifier -> the twins it straddles
    new_twins: set[str] = field(default_factory=set)

    def twin_for(self, identifier: Identifier) -> str | None:
        return self.twins.get(identifier)

    def identifiers_of(self) -> dict[str, list[Identifier]]:
        grouped: dict[str, list[Identifier]] = {}
        for identifier, twin in sorted(self.twins.items()):
            grouped.setdefault(twin, []).append(identifier)
        return grouped


class IdentityGraph:
    """Union-find over identifiers: ``link`` says some identifiers are one person; ``resolve`` names twins."""

    def __init__(self) -> None:
        self._parent: dict[Identifier, Identifier] = {}

    def link(self, identifiers: Iterable[Identifier]) -> None:
        items = list(identifiers)
        for identifier in items:
            self._parent.setdefault(identifier, identifier)
        for other in items[1:]:
            a, b = self._root(items[0]), self._root(other)
            if a != b:
                self._parent[max(a, b)] = min(a, b)

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._parent

    def groups(self) -> list[list[Identifier]]:
        by_root: dict[Identifier, list[Identifier]] = {}
        for identifier in self._parent:
            by_root.setdefault(self._root(identifier), []).append(identifier)
        return [sorted(g) for g in by_root.values()]

    def resolve(
        self,
        known: Mapping[Identifier, str],
        *,
        customer_twin: Callable[[str], str] = str,
    ) -> Resolution:
        """Assign a twin to every group: the one twin its identifiers already have (``known``), or a new one.

        ``customer_twin`` turns a customer id into its twin id (an import's prefix, e.g. ``gss-``).
        """
        resolution = Resolution()
        for group in self.groups():
            owners = sorted({known[i] for i in group if i in known})
            if len(owners) > 1:
                for identifier in group:
                    resolution.conflicts[identifier] = owners
                continue
            if owners:
                twin = owners[0]
            else:
                twin = _new_twin_id(group, customer_twin)
                resolution.new_twins.add(twin)
            for identifier in group:
                resolution.twins[identifier] = twin
        return resolution

    def _root(self, identifier: Identifier) -> Identifier:
        parent = self._parent[identifier]
        while parent != self._parent[parent]:
            self._parent[parent] = self._parent[self._parent[parent]]
            parent = self._parent[parent]
        return parent


def _new_twin_id(group: list[Identifier], customer_twin: Callable[[str], str]) -> str:
    customer_ids = sorted(v for k, v in group if k == CUSTOMER_ID)
    if customer_ids:
        return customer_twin(customer_ids[0])
    kind, value = group[0]
    return "cust-" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]
