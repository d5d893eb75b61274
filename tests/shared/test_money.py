"""The ledger's money rules (pure): average confidence and the plain text of a decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.money import LEDGER_CONTEXT, Q8, average_confidence, plain_decimal, quantize
from tests.shared.cases import CONFIDENCE_CASES


@pytest.mark.parametrize(("weight_sum", "quantity", "expected"), CONFIDENCE_CASES)
def test_average_confidence(weight_sum: str, quantity: str, expected: str | None) -> None:
    found = average_confidence(Decimal(weight_sum), Decimal(quantity))
    assert found == (None if expected is None else Decimal(expected))
    assert found is None or found.as_tuple().exponent == -2  # the column's scale


def test_quantize_rounds_half_to_even_in_the_ledger_context() -> None:
    assert quantize(Decimal("0.000000005"), Q8) == Decimal("0")
    assert quantize(Decimal("0.000000015"), Q8) == Decimal("0.00000002")
    # 40 digits: beyond the default context's 28, within the ledger's
    big = Decimal("1234567890123456789012345678901.123456785")
    assert quantize(big, Q8) == Decimal("1234567890123456789012345678901.12345678")
    assert LEDGER_CONTEXT.prec >= 80


@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12))
def test_plain_decimal_is_exact(value: Decimal) -> None:
    text = plain_decimal(value)
    assert "E" not in text and Decimal(text) == value
    assert not ("." in text and text.endswith("0")) and text != "-0"


def test_plain_decimal_forms() -> None:
    cases = {"0.01000000": "0.01", "1E+2": "100", "1E-8": "0.00000001", "-0E-8": "0", "61000.10": "61000.1"}
    assert {k: plain_decimal(Decimal(k)) for k in cases} == cases
