"""Tables of cases for the rules in `shared/`, each run through every service that uses the rule.

CONFIDENCE_CASES: `shared.money.average_confidence`, through the ledger's fold (tests/positions)
and the gateway's position view (tests/mcp_gateway). BAR_CASES: `shared.bars`, through ingest,
metrics and the gateway.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

# (confidence_weight_sum, confidence_quantity, average confidence) of a position's opening fills.
CONFIDENCE_CASES = [
    pytest.param("210.000000000000", "3.00000000", "70", id="exact"),
    pytest.param("100", "3", "33.33", id="no-exact-quotient"),  # 33.333...
    pytest.param("33.325", "1", "33.32", id="half-to-even-down"),
    pytest.param("99.975", "1", "99.98", id="half-to-even-up"),
    pytest.param("0.000000333250", "0.00000001", "33.32", id="tiny-quantity"),
    pytest.param(  # 30 significant digits: rounded once, not first to the default 28
        "33.33499999999999999999999999999", "1", "33.33", id="beyond-28-digits"
    ),
    pytest.param("0", "0", None, id="no-confidence"),  # no opening fill carried one
]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# (bar name, its length in ms or None, the close time of a candle opened at T0 or None = no bar)
BAR_CASES = [
    pytest.param("1s", 1_000, T0 + timedelta(seconds=1), id="1s"),
    pytest.param("3m", 180_000, T0 + timedelta(minutes=3), id="3m"),
    pytest.param("4H", 14_400_000, T0 + timedelta(hours=4), id="4H"),
    pytest.param("1D", 86_400_000, T0 + timedelta(days=1), id="1D"),
    pytest.param("1Dutc", 86_400_000, T0 + timedelta(days=1), id="1Dutc"),
    pytest.param("1W", 604_800_000, T0 + timedelta(weeks=1), id="1W"),
    pytest.param("3M", None, datetime(2026, 4, 1, tzinfo=UTC), id="3M-calendar-months"),
    pytest.param("0m", None, None, id="zero-count"),
    pytest.param("100m", None, None, id="three-digit-count"),
    pytest.param("3x", None, None, id="unknown-unit"),
    pytest.param("m", None, None, id="no-count"),
    pytest.param("", None, None, id="empty"),
]
