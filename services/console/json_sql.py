"""A page's JSON written by PostgreSQL in the form the row models write it (models.py): decimals
as exact strings without exponent or trailing zeros (`plain_decimal`), times ISO 8601 in UTC
with microseconds only when there are some, UUIDs as text, jsonb as it is stored.

The expression of each field is chosen from the model's annotation, so the pydantic model stays
the one description of a row (and of the OpenAPI document); `tests/console/test_json_sql.py`
checks the two renderings agree row for row.
"""

from __future__ import annotations

import types
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

# trim_scale: 1.50000000 -> 1.5, 100 -> 100 (NUMERIC text never has an exponent): plain_decimal.
_DECIMAL: Final = "trim_scale({v})::text"
# pydantic: "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.500000Z" (6 digits when not whole).
_UTC: Final = (
    "to_char({v} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || "
    "CASE WHEN date_part('microseconds', {v})::bigint % 1000000 = 0 THEN 'Z' "
    "ELSE to_char({v} AT TIME ZONE 'UTC', '.US') || 'Z' END"
)
_TEXT: Final = "{v}::text"
_AS_IS: Final = "{v}"


def _base(annotation: Any) -> Any:
    """The type under `X | None` and `Annotated[X, ...]`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def _template(annotation: Any) -> str:
    base = _base(annotation)
    if base is Decimal:
        return _DECIMAL
    if base is datetime:
        return _UTC
    if base is UUID:
        return _TEXT
    return _AS_IS  # str, int, bool: JSON's own; dict / Any: a json(b) column as stored


def utc_sql(value: str) -> str:
    """A timestamptz expression as the JSON string pydantic writes for a `Utc` field."""
    return "to_json(" + _UTC.format(v=value) + ")"


def object_sql(model: type[BaseModel], alias: str) -> str:
    """`json_build_object(...)` of one row of `alias`, whose columns are named as the fields."""
    pairs = []
    for name, field in model.model_fields.items():
        value = f'{alias}."{name}"'
        pairs.append(f"'{name}', " + _template(field.annotation).format(v=value))
    return f"json_build_object({', '.join(pairs)})"


def page_json_sql(model: type[BaseModel], page_text: str, limit_param: str) -> str:
    """Around the keyset query of a page (its `limit + 1` rows with `page_time`, `page_id`): one
    row with `items` (the first `limit` rows as a JSON array, in the page's order, as text), `more`
    and the last item's `page_time` / `page_id` (for the cursor, when there is more)."""
    item = object_sql(model, "p")
    return (
        f"SELECT COALESCE(json_agg({item} ORDER BY p.page_n) FILTER (WHERE p.page_n <= {limit_param}),"
        f" '[]')::text AS items, count(*) > {limit_param} AS more,"
        f" (array_agg(p.page_time) FILTER (WHERE p.page_n = {limit_param}))[1] AS last_time,"
        f" (array_agg(p.page_id) FILTER (WHERE p.page_n = {limit_param}))[1] AS last_id"
        f" FROM (SELECT q.*, row_number() OVER (ORDER BY q.page_time DESC, q.page_id DESC) AS page_n"
        f" FROM ({page_text}) q) p"
    )
