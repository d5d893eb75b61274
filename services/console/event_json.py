"""The `data:` of a console event: the NATS message's model, written as the REST API writes
values (decimals as exact strings without exponent, times ISO 8601 in UTC)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final
from uuid import UUID

from pydantic import BaseModel

from shared.money import plain_decimal
from shared.subjects import ROUTE

DROPPED_FIELDS: Final = frozenset({"account_id", "raw"})  # the internal id; OKX's raw payload


def event_model(kind: str) -> type[BaseModel]:
    model = ROUTE[kind].model
    assert model is not None
    return model


def event_data(event: BaseModel, kind: str, external_id: str) -> str:
    """`{"account", "symbol", "kind", ...the event's fields}`, written as the REST API writes
    values: decimals as exact strings without exponent, times ISO 8601 in UTC."""
    fields = event.model_dump(exclude=set(DROPPED_FIELDS))
    head = {"account": external_id, "symbol": fields.pop("inst_id"), "kind": fields.pop("kind", kind)}
    return json.dumps(head | fields, separators=(",", ":"), default=_json_value)


def _json_value(value: object) -> str:
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
