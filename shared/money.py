"""Money arithmetic of the ledger: its decimal context, column quantizers, the average
confidence of a position, and the plain text of a decimal.

Every figure the ledger stores is computed in `LEDGER_CONTEXT` (wide enough that no product of
NUMERIC(32,12) values is ever rounded) and quantized to its column's scale with the one
rounding mode, so a row read back equals the row computed and every reader that recomputes a
figure (the gateway) gets the same digits.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

ROUNDING = ROUND_HALF_EVEN
LEDGER_CONTEXT = Context(prec=80, rounding=ROUNDING)
ZERO = Decimal(0)
Q2 = Decimal("0.01")
Q4 = Decimal("0.0001")
Q8 = Decimal("0.00000001")
Q12 = Decimal("0.000000000001")
Q16 = Decimal("0.0000000000000001")  # px (8 dp) x contracts (8 dp): exact


def quantize(value: Decimal, exp: Decimal) -> Decimal:
    """Round to a column scale with the ledger's one rounding mode."""
    return value.quantize(exp, rounding=ROUNDING, context=LEDGER_CONTEXT)


def quantize_opt(value: Decimal | None, exp: Decimal) -> Decimal | None:
    """`quantize` that passes None through."""
    return None if value is None else quantize(value, exp)


def average_confidence(weight_sum: Decimal, quantity: Decimal) -> Decimal | None:
    """The contract-weighted confidence of a position's opening fills: sum(confidence x size)
    over the fills that carried one, divided by their size, to 2 places; None without any."""
    if not quantity:
        return None
    return quantize(LEDGER_CONTEXT.divide(weight_sum, quantity), Q2)


def plain_decimal(value: Decimal) -> str:
    """Exact, without exponent or trailing zeros: Decimal('0.01000000') -> '0.01'."""
    text = str(value)  # half the cost of format(value, "f"); exponent form only when tiny or huge
    if "E" in text:
        text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
