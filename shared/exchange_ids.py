"""The order of OKX ids (trade, bill, order): decimal integers that grow in execution order.

Compared as text, "100" sorts before "99"; compared as int(), a non-numeric id breaks the sort.
One key for both, and its SQL twin for the queries that must agree with the fold: the id
without leading zeros by length, then by code point (COLLATE "C"), then the id as written (so
"007" and "7" still have a fixed order). For decimal integers this is integer order; for any
other text it is still a total order, the same in Python and PostgreSQL.
"""

from __future__ import annotations

IdKey = tuple[int, str, str]


def id_key(exchange_id: str) -> IdKey:
    """The sort key of an exchange id: integer order for decimal ids, a total order for any."""
    digits = exchange_id.lstrip("0")
    return (len(digits), digits, exchange_id)


def id_order_sql(column: str, direction: str = "ASC") -> str:
    """`ORDER BY` terms that sort `column` as `id_key` does (direction ASC or DESC)."""
    if direction not in ("ASC", "DESC"):
        raise ValueError(f"direction must be ASC or DESC, not {direction!r}")
    bare = f"ltrim({column}, '0')"
    return (f'length({bare}) {direction}, {bare} COLLATE "C" {direction}, '
            f'{column} COLLATE "C" {direction}')
