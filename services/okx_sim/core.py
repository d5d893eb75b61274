"""The running simulator: clock + market + exchange + websocket hub, and the test controls.

Everything the server does goes through `SimCore`; it is also what `run_sim` exposes as
`sim.core`. All methods run on the event loop thread and never block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import structlog

from .auth import ApiKey
from .config import SimConfig
from .exchange import Exchange
from .hub import Hub
from .market import Market
from .models import Event
from .saving import Saver, lock
from .state import Encoder, StateError, load, restore

log = structlog.get_logger("okx_sim")


class SimClock:
    """Simulated time in ms: real time × speed from a start, plus any forced advances."""

    def __init__(self, start_ms: int | None, speed: Decimal,
                 real: Callable[[], float] = time.time) -> None:
        self._real = real
        self._real0 = real()
        self._start = start_ms if start_ms is not None else int(self._real0 * 1000)
        self._speed = speed
        self._skew = 0

    def now(self) -> int:
        """Current simulated Unix ms."""
        elapsed = Decimal(int((self._real() - self._real0) * 1000))
        return self._start + int(elapsed * self._speed) + self._skew

    def advance(self, ms: int) -> None:
        """Jump simulated time forward."""
        self._skew += max(0, ms)

    def resume_after(self, ms: int) -> None:
        """Make now() later than `ms` (a restart never goes back before the saved time)."""
        self.advance(ms + 1 - self.now())


class SimCore:
    """Market, exchange and pushes of one simulated OKX."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.clock = SimClock(config.start_ms, config.speed)
        self.specs = config.instrument_specs()
        self.market = Market(self.specs, config.seed, config.funding_interval_s * 1000)
        self.exchange = Exchange(
            self.specs, clock=self.clock.now, maker_fee_rate=config.maker_fee_rate,
            taker_fee_rate=config.taker_fee_rate, mmr_rate=config.mmr_rate,
            slippage=config.slippage, liquidation=config.liquidation,
            default_lever=config.default_lever,
        )
        self.funding_period = self.clock.now() // self.market.funding_interval_ms
        self.keys = {a.api_key: ApiKey(a.api_key, a.secret, a.passphrase, a.live)
                     for a in config.accounts}
        self.hub = Hub(self, config.idle_timeout_s)
        self.saver: Saver | None = None
        if config.state_file:
            self._open_state(Path(config.state_file))
        self._add_accounts()
        self.refresh()

    def _add_accounts(self) -> None:
        for spec in self.config.accounts:
            if spec.api_key not in self.exchange.accounts:  # else restored from the state file
                self.exchange.add_account(spec, self.config.okx_pos_mode)

    def _open_state(self, path: Path) -> None:
        held = lock(path)
        try:
            snapshot = load(path)
            if snapshot is not None:
                restore(self, snapshot, path)
            self._add_accounts()
            encoder = Encoder()
            self.saver = Saver(path, lambda: encoder.encode(self), held)
            self.saver.save_now()  # fails fast on an unwritable file; records new accounts
        except OSError as err:
            held.close()
            raise StateError(f"state file {path}: cannot write it ({err.strerror})") from None
        except BaseException:
            held.close()
            raise
        self.exchange.on_change = self.saver.changed

    def changed(self) -> None:
        """The market or the clock was moved by a control: save like any exchange change."""
        if self.saver is not None:
            self.saver.changed()

    async def close(self) -> None:
        """Write the final state (if there is a state file)."""
        if self.saver is not None:
            await self.saver.close()

    def now(self) -> int:
        """Simulated time in ms."""
        return self.clock.now()

    @staticmethod
    def now_real_ms() -> int:
        """Wall-clock ms: request signatures are checked against real time, not sim time."""
        return int(time.time() * 1000)

    def refresh(self) -> None:
        """Give the exchange the current prices (no matching)."""
        now = self.now()
        for sym in self.specs:
            self.exchange.set_price(sym, self.market.last(sym, now), self.market.mark(sym, now))

    def tick(self) -> None:
        """One market step: match resting orders, liquidate, settle funding, push data."""
        now = self.now()
        for sym in self.specs:
            last, mark = self.market.last(sym, now), self.market.mark(sym, now)
            self.publish(self.exchange.on_market(sym, last, mark))
        period = now // self.market.funding_interval_ms
        while self.funding_period < period:
            for sym in self.specs:
                rate = self.market.funding_rate_for(sym, self.funding_period)
                self.publish(self.exchange.settle_funding(sym, rate))
            self.funding_period += 1
        self.hub.market_tick(now)

    def publish(self, events: list[Event]) -> None:
        """Push exchange events to the private sockets of their accounts."""
        for event in events:
            self.hub.private_event(event)

    # --- test controls ---------------------------------------------------------------------
    def set_price(self, inst_id: str, px: Decimal) -> Decimal:
        """Move the market price of an instrument now (and keep it shifted), then tick."""
        got = self.market.set_price(inst_id, px, self.now())
        self.changed()
        self.tick()
        return got

    def advance(self, seconds: float) -> None:
        """Jump simulated time forward (closes bars, settles funding), then tick."""
        self.clock.advance(int(seconds * 1000))
        self.changed()
        self.tick()

    def transfer(self, api_key: str, amount: Decimal) -> Decimal:
        """Move USDT in or out of an account (an external change of its balance)."""
        self.publish(self.exchange.transfer(api_key, amount))
        return self.exchange.accounts[api_key].cash

    def drop_private(self, api_key: str | None = None, code: int = 1011) -> int:
        """Close the private sockets of an API key (all keys if None); returns how many."""
        return self.hub.drop_private(api_key, code)

    def drop_business(self, api_key: str | None = None, code: int = 1011) -> int:
        """Close the logged-in business sockets (orders-algo) of an API key; returns how many."""
        return self.hub.drop_private(api_key, code, endpoint="business")

    def repeat_last_push(self, api_key: str) -> bool:
        """Send the last private data push of an API key again."""
        return self.hub.repeat_last(api_key)

    def send_malformed(self, api_key: str | None = None) -> int:
        """Send a frame that is not valid JSON to private sockets (of one key, or all)."""
        return self.hub.send_malformed(api_key)

    def pause_pushes(self, api_key: str) -> None:
        """Stop private data pushes of an API key (trading continues; REST still answers)."""
        self.hub.paused.add(api_key)

    def resume_pushes(self, api_key: str) -> None:
        """Resume private pushes (what happened meanwhile is not replayed)."""
        self.hub.paused.discard(api_key)
