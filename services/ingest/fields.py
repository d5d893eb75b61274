"""Typed field readers for OKX JSON (pure): every value arrives as a string, or is bad input.

Each reader raises `BadFrame` with a short machine-readable reason and the field name, so a
bad frame is counted and logged precisely and nothing half-read is published.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, get_args
from uuid import UUID

from pydantic import ValidationError

from shared.clock import from_ms
from shared.errors import PermanentError
from shared.logging import redact
from shared.messages import Event
from shared.types import Mode, PosSide, Side

_INST_ID = re.compile(r"^[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){0,4}$")
_ID = re.compile(r"^-?[A-Za-z0-9_]{1,64}$")
_MAX_MS = 10**13  # year 2286: anything larger is not an OKX timestamp
Json = Mapping[str, Any]
E = TypeVar("E", bound=Event)
SIDES: tuple[str, ...] = get_args(Side)
POS_SIDES: tuple[str, ...] = get_args(PosSide)


class BadFrame(PermanentError):
    """Input that can never be turned into an event; `reason` is a stable counter key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def text(d: Json, key: str, *, required: bool = True) -> str | None:
    """A scalar field as text; `""` and absent count as missing."""
    value = d.get(key)
    if value is None or value == "":
        if required:
            raise BadFrame("missing_field", key)
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise BadFrame("bad_field", key)
    return str(value)


def req_text(d: Json, key: str) -> str:
    """A required scalar field as text."""
    value = text(d, key)
    assert value is not None
    return value


def decimal(d: Json, key: str, *, required: bool = True) -> Decimal | None:
    """A finite Decimal (never a float)."""
    raw = text(d, key, required=required)
    if raw is None:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise BadFrame("bad_field", key) from None
    if not value.is_finite():
        raise BadFrame("bad_field", key)
    return value


def req_decimal(d: Json, key: str) -> Decimal:
    """A required finite Decimal."""
    value = decimal(d, key)
    assert value is not None
    return value


def ms_time(d: Json, key: str, *, required: bool = True) -> datetime | None:
    """Unix milliseconds (a digit string) as an aware UTC datetime."""
    raw = text(d, key, required=required)
    if raw is None:
        return None
    if not raw.isdigit() or not 0 < int(raw) < _MAX_MS:
        raise BadFrame("bad_field", key)
    return from_ms(raw)


def req_time(d: Json, key: str) -> datetime:
    """A required Unix-ms timestamp."""
    value = ms_time(d, key)
    assert value is not None
    return value


def inst_id(d: Json, key: str = "instId") -> str:
    """An instrument id that is safe as a NATS subject token (no '.', '*', '>')."""
    value = req_text(d, key)
    if not _INST_ID.match(value):
        raise BadFrame("bad_field", key)
    return value


def ident(d: Json, key: str, *, required: bool = True) -> str | None:
    """An exchange id (ordId, tradeId, billId, clOrdId): short, alphanumeric."""
    value = text(d, key, required=required)
    if value is not None and not _ID.match(value):
        raise BadFrame("bad_field", key)
    return value


def choice(d: Json, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    """One of `allowed`; `default` when absent (if given)."""
    value = text(d, key, required=default is None)
    if value is None:
        assert default is not None
        return default
    if value not in allowed:
        raise BadFrame("bad_field", key)
    return value


def flag(d: Json, key: str) -> bool | None:
    """OKX booleans in order objects are the strings "true" / "false"."""
    value = d.get(key)
    if value in (None, ""):
        return None
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise BadFrame("bad_field", key)


@dataclass(frozen=True)
class AccountRef:
    """The account every account event belongs to."""

    account_id: UUID
    mode: Mode


def build(cls: type[E], **values: Any) -> E:
    """Construct an event; a value the model refuses becomes `BadFrame("invalid_value")`."""
    try:
        return cls(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadFrame("invalid_value", ".".join(str(p) for p in first["loc"])) from None


def redacted(d: Json) -> dict[str, Any]:
    """A raw payload fit to keep: secret-looking keys and registered secret values masked."""
    result: dict[str, Any] = redact(dict(d))
    return result
