"""The seeded market: determinism, candle consistency across bar sizes, paging, alignment."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.okx_sim.bars import DAY_MS, HOUR_MS, parse_bar
from services.okx_sim.config import instrument_for
from services.okx_sim.market import Market

from .conftest import START_MS

SYMS = ("BTC-USDT-SWAP", "ETH-USDT-SWAP")
BTC = SYMS[0]


def market(seed: int) -> Market:
    return Market({s: instrument_for(s) for s in SYMS}, seed, 8 * 3600 * 1000)


def test_same_seed_same_market_different_seed_different_market() -> None:
    a, b, c = market(7), market(7), market(8)
    for bar in ("1m", "1H", "1D"):
        got = a.candles(BTC, parse_bar(bar), START_MS, None, None, 10)
        assert got == b.candles(BTC, parse_bar(bar), START_MS, None, None, 10)
        assert got != c.candles(BTC, parse_bar(bar), START_MS, None, None, 10)
    walk = [a.last(BTC, START_MS + i * 5000) for i in range(200)]
    assert walk == [b.last(BTC, START_MS + i * 5000) for i in range(200)]
    assert len(set(walk)) > 20  # it does move
    assert a.ticker("ETH-USDT-SWAP", START_MS) == b.ticker("ETH-USDT-SWAP", START_MS)
    assert a.funding(BTC, START_MS) == b.funding(BTC, START_MS)


def test_history_is_newest_first_and_pages_with_after_and_before() -> None:
    m, bar = market(1), parse_bar("15m")
    first = m.candles(BTC, bar, START_MS + 1234, None, None, 10)
    stamps = [c.ts for c in first]
    assert stamps == [START_MS - i * 15 * 60_000 for i in range(10)]
    assert not first[0].confirmed and all(c.confirmed for c in first[1:])
    older = m.candles(BTC, bar, START_MS + 1234, stamps[-1], None, 5)
    assert [c.ts for c in older] == [stamps[-1] - (i + 1) * 15 * 60_000 for i in range(5)]
    newer = m.candles(BTC, bar, START_MS + 1234, None, stamps[3], 100)
    assert [c.ts for c in newer] == stamps[:3]


def test_bar_boundaries() -> None:
    t = START_MS + 5 * HOUR_MS + 123  # 2026-01-01 05:00:00.123 UTC
    assert parse_bar("4H").start(t) == START_MS + 4 * HOUR_MS
    assert parse_bar("1Dutc").start(t) == START_MS
    assert parse_bar("1D").start(t) == START_MS - 8 * HOUR_MS  # opens 00:00 UTC+8
    assert parse_bar("1W").start(t) == START_MS - 3 * DAY_MS - 8 * HOUR_MS  # Monday UTC+8


@settings(max_examples=25, deadline=None)
@given(minutes=st.integers(min_value=0, max_value=60 * 24 * 3))
def test_a_5m_bar_is_its_five_1m_bars(minutes: int) -> None:
    m = MARKET
    now = START_MS + 10 * DAY_MS
    ts = parse_bar("5m").start(START_MS + minutes * 60_000)
    five = m.candle(BTC, parse_bar("5m"), ts, now)
    ones = [m.candle(BTC, parse_bar("1m"), ts + i * 60_000, now) for i in range(5)]
    assert five is not None and all(ones)
    parts = [c for c in ones if c is not None]
    assert five.o == parts[0].o and five.c == parts[-1].c
    assert five.h == max(c.h for c in parts) and five.low == min(c.low for c in parts)
    assert five.vol == sum((c.vol for c in parts), Decimal(0))
    assert five.low <= min(five.o, five.c) <= max(five.o, five.c) <= five.h


MARKET = market(3)


def test_set_price_moves_now_and_leaves_history_alone() -> None:
    m = market(5)
    bar = parse_bar("1m")
    before = m.candles(BTC, bar, START_MS + 600_000, None, None, 5)[1:]
    got = m.set_price(BTC, Decimal("12345.67"), START_MS + 600_000)
    assert got == Decimal("12345.7") and m.last(BTC, START_MS + 600_000) == got
    assert m.candles(BTC, bar, START_MS + 600_000, None, None, 5)[1:] == before
    live = m.candle(BTC, bar, START_MS + 600_000, START_MS + 600_000)
    assert live is not None and live.c == got
