"""A deterministic synthetic market: per symbol a seeded walk, candles, funding and open interest.

The price path is a pure function of (seed, instrument, time): a mean-reverting daily walk
anchored on 2020-01-01 gives each UTC day's opening price, and a Brownian bridge of 5-second
steps joins one day's open to the next. History, the live tick and every candle size are all
read from that one path, so `history-candles` works from the first second, a live bar ends up
identical to the same bar fetched later, and the same seed always gives the same market.
Floats are used only to draw the random numbers; prices leave the generator as integer ticks.
Test controls may shift the path from a given step on (`set_price`); those shifts are kept.
"""

from __future__ import annotations

import bisect
import math
import random
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal

from .bars import DAY_MS, Bar
from .config import InstrumentSpec

STEP_MS = 5_000
STEPS_PER_MIN = 12
MIN_PER_DAY = 1440
STEPS_PER_DAY = STEPS_PER_MIN * MIN_PER_DAY
ANCHOR_DAY = 18262  # 2020-01-01, the first day with market data
MEAN_REVERSION = 0.02
_CACHE_DAYS = 512


@dataclass(frozen=True)
class Candle:
    """One bar: open time, prices, volume in contracts / base coin / quote, and `confirm`."""

    ts: int
    o: Decimal
    h: Decimal
    low: Decimal
    c: Decimal
    vol: Decimal
    vol_ccy: Decimal
    vol_quote: Decimal
    confirmed: bool


@dataclass(frozen=True)
class Ticker:
    """The 24 h ticker of one instrument at one instant."""

    inst_id: str
    last: Decimal
    last_sz: Decimal
    ask_px: Decimal
    ask_sz: Decimal
    bid_px: Decimal
    bid_sz: Decimal
    open24h: Decimal
    high24h: Decimal
    low24h: Decimal
    vol24h: Decimal
    vol_ccy24h: Decimal
    sod_utc0: Decimal
    sod_utc8: Decimal
    ts: int


@dataclass(frozen=True)
class Funding:
    """Funding state: the rate to settle at `funding_time`, and the last settled one."""

    rate: Decimal
    funding_time: int
    next_funding_time: int
    settled_rate: Decimal


class _Day:
    """The 5-second path of one UTC day and its per-minute aggregates (all in ticks/lots)."""

    __slots__ = ("close", "high", "low", "open", "path", "vol")

    def __init__(self, path: array[int], vol: array[int]) -> None:
        self.path = path
        self.vol = vol
        n = STEPS_PER_MIN
        self.open = array("q", path[::n])
        self.close = array("q", path[n - 1 :: n])
        self.high = array("q", (max(path[i : i + n]) for i in range(0, len(path), n)))
        self.low = array("q", (min(path[i : i + n]) for i in range(0, len(path), n)))


# (open, high, low, close, volume in lots) over a range of steps
Agg = tuple[int, int, int, int, int]


class Market:
    """The seeded market of a set of instruments; every method is pure given its time argument."""

    def __init__(
        self, specs: dict[str, InstrumentSpec], seed: int, funding_interval_ms: int
    ) -> None:
        self.specs = specs
        self.seed = seed
        self.funding_interval_ms = funding_interval_ms
        self._opens: dict[str, list[int]] = {s: [] for s in specs}
        self._days: OrderedDict[tuple[str, int], _Day] = OrderedDict()
        # set_price shifts per symbol, [(from step, ticks)] by step; the state file keeps them
        self.offsets: dict[str, list[tuple[int, int]]] = {s: [] for s in specs}

    # --- the path -------------------------------------------------------------------
    def _rng(self, *parts: object) -> random.Random:
        return random.Random("|".join(str(p) for p in (self.seed, *parts)))

    def _day_open(self, sym: str, day: int) -> int:
        opens = self._opens[sym]
        spec = self.specs[sym]
        if not opens:
            opens.append(int(spec.base_px / spec.tick_sz))
        rng_base = math.log(float(spec.base_px))
        while len(opens) <= day - ANCHOR_DAY:
            d = ANCHOR_DAY + len(opens)
            x = math.log(opens[-1] * float(spec.tick_sz))
            eps = self._rng(spec.inst_id, "day", d).gauss(0.0, 1.0)
            x += MEAN_REVERSION * (rng_base - x) + float(spec.daily_vol) * eps
            opens.append(max(1, round(math.exp(x) / float(spec.tick_sz))))
        return opens[day - ANCHOR_DAY]

    def _day(self, sym: str, day: int) -> _Day:
        key = (sym, day)
        cached = self._days.get(key)
        if cached is not None:
            self._days.move_to_end(key)
            return cached
        spec = self.specs[sym]
        start, target = self._day_open(sym, day), self._day_open(sym, day + 1)
        rng = self._rng(sym, "steps", day)
        sigma = start * float(spec.daily_vol) / math.sqrt(STEPS_PER_DAY)
        gauss = rng.gauss
        walk, acc = [], 0
        for _ in range(STEPS_PER_DAY):
            walk.append(acc)
            acc += round(gauss(0.0, sigma))
        drift = acc - (target - start)  # bridge: remove the drift so the day ends at `target`
        path = array(
            "q", (max(1, start + w - drift * k // STEPS_PER_DAY) for k, w in enumerate(walk))
        )
        per_min = max(1, int(spec.base_oi / 2000 / spec.lot_sz))
        vol = array("q", (per_min * rng.randint(40, 160) // 100 for _ in range(MIN_PER_DAY)))
        built = _Day(path, vol)
        self._days[key] = built
        if len(self._days) > _CACHE_DAYS:
            self._days.popitem(last=False)
        return built

    def _offset(self, sym: str, step: int) -> int:
        offs = self.offsets[sym]
        i = bisect.bisect_right(offs, (step, math.inf)) - 1
        return offs[i][1] if i >= 0 else 0

    def _base_ticks(self, sym: str, step: int) -> int:
        day, k = divmod(step, STEPS_PER_DAY)
        return self._day(sym, day).path[k]

    def ticks_at(self, sym: str, t_ms: int) -> int:
        """Price at t_ms, in ticks."""
        step = t_ms // STEP_MS
        return self._base_ticks(sym, step) + self._offset(sym, step)

    def last(self, sym: str, t_ms: int) -> Decimal:
        """Last traded price at t_ms."""
        return self.ticks_at(sym, t_ms) * self.specs[sym].tick_sz

    def mark(self, sym: str, t_ms: int) -> Decimal:
        """Mark price at t_ms (the simulator marks at the last price)."""
        return self.last(sym, t_ms)

    def set_price(self, sym: str, px: Decimal, t_ms: int) -> Decimal:
        """Shift the path so the price is `px` from t_ms's step on; returns the tick-rounded px."""
        spec = self.specs[sym]
        step = t_ms // STEP_MS
        want = max(1, int((px / spec.tick_sz).to_integral_value()))
        offs = [o for o in self.offsets[sym] if o[0] < step]
        offs.append((step, want - self._base_ticks(sym, step)))
        self.offsets[sym] = offs
        return want * spec.tick_sz

    # --- aggregation ------------------------------------------------------------------
    def _agg_base(self, sym: str, s0: int, s1: int) -> Agg:
        parts: list[Agg] = []
        for day in range(s0 // STEPS_PER_DAY, (s1 - 1) // STEPS_PER_DAY + 1):
            d = self._day(sym, day)
            a = max(s0, day * STEPS_PER_DAY) - day * STEPS_PER_DAY
            b = min(s1, (day + 1) * STEPS_PER_DAY) - day * STEPS_PER_DAY
            ma, mb = -(-a // STEPS_PER_MIN), b // STEPS_PER_MIN
            if ma < mb:
                if a < ma * STEPS_PER_MIN:
                    parts.append(_steps(d, a, ma * STEPS_PER_MIN))
                parts.append((d.open[ma], max(d.high[ma:mb]), min(d.low[ma:mb]),
                              d.close[mb - 1], sum(d.vol[ma:mb]) * STEPS_PER_MIN))
                if mb * STEPS_PER_MIN < b:
                    parts.append(_steps(d, mb * STEPS_PER_MIN, b))
            else:
                parts.append(_steps(d, a, b))
        return _combine(parts)

    def _agg(self, sym: str, s0: int, s1: int) -> Agg:
        cuts = [s for s, _ in self.offsets[sym] if s0 < s < s1]
        parts = []
        for a, b in zip([s0, *cuts], [*cuts, s1], strict=True):
            o, h, low, c, v = self._agg_base(sym, a, b)
            off = self._offset(sym, a)
            parts.append((o + off, h + off, low + off, c + off, v))
        return _combine(parts)

    def candle(self, sym: str, bar: Bar, ts: int, now_ms: int) -> Candle | None:
        """The bar opening at `ts` as seen at now_ms (in progress if now_ms is inside it)."""
        if ts > now_ms or ts < ANCHOR_DAY * DAY_MS:
            return None
        end = ts + bar.ms
        s0 = ts // STEP_MS
        s1 = end // STEP_MS if now_ms >= end else now_ms // STEP_MS + 1
        o, h, low, c, v = self._agg(sym, s0, s1)
        spec = self.specs[sym]
        vol = Decimal(v // STEPS_PER_MIN) * spec.lot_sz
        vol_ccy = vol * spec.contract_size
        close = c * spec.tick_sz
        return Candle(ts, o * spec.tick_sz, h * spec.tick_sz, low * spec.tick_sz, close,
                      vol, vol_ccy, vol_ccy * close, now_ms >= end)

    def candles(
        self, sym: str, bar: Bar, now_ms: int, after: int | None, before: int | None, limit: int
    ) -> list[Candle]:
        """Bars newest first: `after` = older than that ts, `before` = newer than it."""
        ts = bar.start(now_ms)
        if after is not None:
            ts = min(ts, bar.start(after - 1))
        out: list[Candle] = []
        while len(out) < limit and (before is None or ts > before):
            candle = self.candle(sym, bar, ts, now_ms)
            if candle is None:
                break
            out.append(candle)
            ts = bar.start(ts - 1)
        return out

    # --- derived public data -----------------------------------------------------------
    def ticker(self, sym: str, t_ms: int) -> Ticker:
        """The 24 h ticker at t_ms."""
        spec = self.specs[sym]
        step = t_ms // STEP_MS
        o, h, low, c, v = self._agg(sym, step - STEPS_PER_DAY + 1, step + 1)
        rng = self._rng(sym, "sz", step)
        tick = spec.tick_sz
        last = c * tick
        lot = spec.lot_sz
        day0 = t_ms // DAY_MS * DAY_MS
        day8 = (t_ms + 8 * 3_600_000) // DAY_MS * DAY_MS - 8 * 3_600_000
        vol24 = Decimal(v // STEPS_PER_MIN) * lot
        return Ticker(
            sym, last, rng.randint(1, 200) * lot, last + tick, rng.randint(1, 2000) * lot,
            last - tick, rng.randint(1, 2000) * lot, o * tick, h * tick, low * tick,
            vol24, vol24 * spec.contract_size, self.last(sym, day0),
            self.last(sym, day8), t_ms,
        )

    def funding_rate_for(self, sym: str, period: int) -> Decimal:
        """The funding rate settled at the end of funding period `period`."""
        return Decimal(self._rng(sym, "funding", period).randint(-3000, 10000)).scaleb(-8)

    def funding(self, sym: str, t_ms: int) -> Funding:
        """Funding state at t_ms."""
        n = t_ms // self.funding_interval_ms
        iv = self.funding_interval_ms
        return Funding(self.funding_rate_for(sym, n), (n + 1) * iv, (n + 2) * iv,
                       self.funding_rate_for(sym, n - 1))

    def open_interest(self, sym: str, t_ms: int) -> Decimal:
        """Open interest in contracts at t_ms (changes once a minute)."""
        spec = self.specs[sym]
        wiggle = self._rng(sym, "oi", t_ms // 60_000).randint(9500, 10500)
        return (spec.base_oi * wiggle / 10000 / spec.lot_sz).to_integral_value() * spec.lot_sz


def _steps(d: _Day, a: int, b: int) -> Agg:
    seg = d.path[a:b]
    first_min, last_min = a // STEPS_PER_MIN, (b - 1) // STEPS_PER_MIN
    vol = sum(d.vol[m] for m in range(first_min, last_min + 1)) * (b - a) // (
        last_min - first_min + 1
    )
    return seg[0], max(seg), min(seg), seg[-1], vol


def _combine(parts: list[Agg]) -> Agg:
    return (parts[0][0], max(p[1] for p in parts), min(p[2] for p in parts), parts[-1][3],
            sum(p[4] for p in parts))
