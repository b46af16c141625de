"""API keys and roles: who may call the HTTP API, for which purposes, and which twins they may see.

A key is shown once, when it is created, and stored as a SHA-256 digest: keys are 32 random bytes, so a plain
digest cannot be reversed by guessing (slow password hashes are for low-entropy secrets).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from twinchat.domain.control import SELF, Use

Role = Literal["admin", "researcher", "product", "customer"]
ROLES: tuple[Role, ...] = ("admin", "researcher", "product", "customer")

# The purposes each role may use a twin for; the customer's consent must also allow it. A customer's key
# acts for the customer themself, on their own twin only.
ROLE_PURPOSES: dict[str, tuple[str, ...]] = {
    "admin": ("research", "product", "marketing"),
    "researcher": ("research",),
    "product": ("product", "marketing"),
    "customer": (SELF,),
}
PREFIX = "tck_"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    role: str
    created_at: datetime
    twin_id: str | None = None  # a customer key's own twin
    label: str = ""
    revoked_at: datetime | None = None

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may_see(self, twin_id: str) -> bool:
        return self.role != "customer" or twin_id == self.twin_id

    def use(self, purpose: str | None = None) -> Use:
        """The use this key makes of a twin: the purpose asked for, or its role's first, if its role allows it."""
        allowed = ROLE_PURPOSES[self.role]
        chosen = purpose or allowed[0]
        if self.role == "customer":
            chosen = SELF  # a customer asking their own twin uses it for themself, whatever the body says
        if chosen not in allowed:
            raise Forbidden(f"a {self.role} key may use twins for {' or '.join(allowed)}, not {chosen}")
        return Use(self.actor, chosen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "role": self.role,
            "twin_id": self.twin_id,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


class Forbidden(PermissionError):
    """The key's role may not do this; the message says what it may do."""


def new_secret() -> tuple[str, str]:
    """(key id, the full key to hand out once): ``tck_<id>_<secret>``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_role(role: str, twin_id: str | None) -> str:
    if role not in ROLES:
        raise ValueError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if (role == "customer") != (twin_id is not None):
        raise ValueError("twin: a customer key needs --twin, and only a customer key is bound to a twin")
    return role
