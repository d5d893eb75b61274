"""A view's JSON form read straight from SQL, with the SQL aliases and the document keys both
taken from the view model's fields: a field renamed in `views` cannot leave a stale alias or key
behind, because the projection refuses to build (at import) unless it accounts for every field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from services.mcp_gateway import views


class Projection:
    """How one view is read from a row: each field is either a column (`columns`: field -> SQL
    expression, selected as `<prefix><field>`) or filled in by the caller (`filled`, from the
    `extra` columns or from elsewhere); `extra` columns (alias -> SQL) carry what is not a field."""

    def __init__(
        self,
        view: type[views.View],
        columns: Mapping[str, str],
        *,
        filled: Iterable[str] = (),
        extra: Mapping[str, str] | None = None,
        prefix: str = "",
    ) -> None:
        fields, filled = tuple(view.model_fields), frozenset(filled)
        unknown = (set(columns) | filled) - set(fields)
        missing = set(fields) - set(columns) - filled
        if unknown or missing or filled & set(columns):
            raise TypeError(
                f"{view.__name__} projection: no such field {sorted(unknown)}, "
                f"not accounted for {sorted(missing)}, both column and filled {sorted(filled & set(columns))}"
            )
        self.view, self.prefix = view, prefix
        self._columns = {prefix + name: sql for name, sql in columns.items()}
        self._extra = dict(extra or {})
        # (key, column) in the model's field order; None: filled by the caller
        self._keys = tuple((name, None if name in filled else prefix + name) for name in fields)

    def column(self, field: str) -> str:
        """The column name of a field."""
        name = self.prefix + field
        if name not in self._columns:
            raise KeyError(f"{self.view.__name__}.{field} is not a column")
        return name

    def select(self) -> str:
        """The select list: every column, aliased, then the extra columns."""
        items = [*self._columns.items(), *self._extra.items()]
        return ", ".join(f'{sql} AS "{alias}"' for alias, sql in items)

    def doc(self, row: Mapping[str, Any] | asyncpg.Record) -> views.Doc:
        """The view's JSON form from a row of `select()`, keys in the model's order; the filled
        fields are None until the caller sets them."""
        return {key: None if column is None else row[column] for key, column in self._keys}
