"""Exchange ids in execution order: the Python key and its SQL twin sort alike, as integers."""

from __future__ import annotations

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.exchange_ids import id_key, id_order_sql

IDS = ["99", "100", "7", "007", "0", "", "1000000000000000000001", "999999999999999999999",
       "a", "B", "ab", "10a", "é", "00", "0100"]


@pytest.mark.parametrize(("smaller", "larger"), [
    pytest.param("99", "100", id="integer-not-text-order"),
    pytest.param("9", "10", id="one-digit-before-two"),
    pytest.param("999999999999999999999", "1000000000000000000001", id="beyond-64-bits"),
    pytest.param("0099", "100", id="leading-zeros-ignored"),
    pytest.param("007", "7", id="equal-values-still-ordered-by-text"),
])
def test_ids_compare_as_integers(smaller: str, larger: str) -> None:
    assert id_key(smaller) < id_key(larger)


@given(st.lists(st.integers(0, 10**30), min_size=2, max_size=30))
def test_decimal_ids_sort_as_their_integers(numbers: list[int]) -> None:
    assert sorted((str(n) for n in numbers), key=id_key) == [str(n) for n in sorted(numbers)]


def test_a_bad_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="ASC or DESC"):
        id_order_sql("x", "DESC; DROP TABLE x")


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
async def test_postgresql_sorts_ids_as_the_python_key_does(db_pool: asyncpg.Pool,
                                                           direction: str) -> None:
    rows = await db_pool.fetch(
        f"SELECT id FROM unnest($1::text[]) AS t(id) ORDER BY {id_order_sql('id', direction)}", IDS)
    assert [r["id"] for r in rows] == sorted(IDS, key=id_key, reverse=direction == "DESC")
