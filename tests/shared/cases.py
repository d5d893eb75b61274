"""Tables of cases for the rules in `shared/`, each run through every service that uses the rule.

BAR_CASES: `shared.bars`, through ingest, metrics and the gateway.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
