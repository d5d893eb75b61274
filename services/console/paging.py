"""Keyset pagination: the opaque cursor and the query parameters every list takes.

A page is sorted newest first on (time, id) and the cursor is the last row's (time, id):
the next page holds the rows strictly after it in that order. Rows inserted while a client
walks the list are never returned twice and never make it skip a row (no OFFSET); a row
inserted behind the cursor (an older time) shows up, one ahead of it does not.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import ClassVar, NamedTuple
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
_MAX_CURSOR = 200


class Cursor(NamedTuple):
    time: datetime
    id: UUID | int


def encode_cursor(time: datetime, row_id: UUID | int) -> str:
    """base64url (no padding) of `<ISO 8601 time>|<id>`."""
    return base64.urlsafe_b64encode(f"{time.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(text: str, id_kind: type[UUID] | type[int] = UUID) -> Cursor:
    """The (time, id) a cursor names, its id a UUID or (a list keyed by a serial) an integer;
    ValueError saying what is wrong with it."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        time_text, id_text = raw.split("|")
        time, row_id = datetime.fromisoformat(time_text), id_kind(id_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("malformed cursor: pass back a next_cursor this API returned") from None
    if time.tzinfo is None:
        raise ValueError("malformed cursor: its time has no time zone")
    return Cursor(time, row_id)


class PageQuery(BaseModel):
    """`limit` and `cursor`; an unknown query parameter is refused (422), not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    cursor_id: ClassVar[type[UUID] | type[int]] = UUID  # the type of the list's row id

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="rows per page")
    cursor: str | None = Field(
        None, max_length=_MAX_CURSOR, description="the next_cursor of the previous page"
    )

    @field_validator("cursor")
    @classmethod
    def _check_cursor(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value, cls.cursor_id)
        return value

    def position(self) -> Cursor | None:
        return None if self.cursor is None else decode_cursor(self.cursor, self.cursor_id)


class TimedQuery(PageQuery):
    """A page of a list with a time: `from` (inclusive) and `to` (exclusive), ISO 8601 with a
    time zone."""

    from_: AwareDatetime | None = Field(None, alias="from", description="inclusive, ISO 8601")
    to: AwareDatetime | None = Field(None, description="exclusive, ISO 8601")

    @model_validator(mode="after")
    def _check_range(self) -> TimedQuery:
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("`from` must be before `to`")
        return self
