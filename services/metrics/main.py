"""The metrics service: the one place that wires pool, NATS, handlers, consumers and timers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from services.metrics.calculations import InvalidCandle, close_time
from services.metrics.config import MetricsSettings
from services.metrics.handlers import MarketHandlers
from services.metrics.refresh import AccountHandlers, Refresher, run_equity_timer
from services.metrics.retention import run_retention_timer
from services.metrics.subscribers import SERVICE, Consumer, Handle, decode
from shared.bus import connect_nats, ensure_streams
from shared.clock import Clock, SystemClock
from shared.consumer import DeadLetters
from shared.db import create_pool
from shared.errors import ConfigError, PermanentError
from shared.health import Health, connection_checks, serving
from shared.logging import get_logger
from shared.messages import Event, PositionEvent
from shared.settings import Settings
from shared.subjects import STREAM_MARKET, STREAM_POSITIONS, Subjects, models_of

SETTINGS_CLASS = MetricsSettings
MARKET_MODELS = models_of(STREAM_MARKET, Event)


def market_dispatch(subjects: Subjects, market: MarketHandlers) -> Handle:
    """Route a MARKET message to its handler by the subject's kind."""
    handlers: dict[str, Callable[[Any], Awaitable[str]]] = {
        "candle": market.on_candle,
        "ticker": market.on_ticker,
        "mark_price": market.on_mark_price,
        "funding_rate": market.on_funding_rate,
        "open_interest": market.on_open_interest,
    }

    if handlers.keys() != MARKET_MODELS.keys():  # a new MARKET route needs its handler here
        raise RuntimeError(f"market handlers {sorted(handlers)} != MARKET routes {sorted(MARKET_MODELS)}")

    async def handle(subject: str, data: bytes) -> str:
        route, tokens = subjects.parse(subject)
        if route.kind not in handlers:
            raise PermanentError(f"no handler for market subject kind {route.kind!r}")
        event = decode(MARKET_MODELS[route.kind], subject, data, tokens.get("inst_id"))
        result: str = await handlers[route.kind](event)
        return result

    return handle


def positions_dispatch(subjects: Subjects, accounts: AccountHandlers) -> Handle:
    async def handle(subject: str, data: bytes) -> str:
        return await accounts.on_position(
            decode(PositionEvent, subject, data, subjects.parse(subject).tokens.get("inst_id")))

    return handle


def check_timeframes(settings: Settings) -> None:
    """Fail at start on a timeframe that is not an OKX bar name."""
    for bar in settings.timeframes:
        try:
            close_time(datetime(2026, 1, 1, tzinfo=UTC), bar)
        except InvalidCandle as exc:
            raise ConfigError("AITRADER_TIMEFRAMES", str(exc)) from None


async def serve(settings: Settings, clock: Clock | None = None) -> None:
    """Run until cancelled."""
    config = settings if isinstance(settings, MetricsSettings) else MetricsSettings(
        **settings.model_dump()
    )
    check_timeframes(config)
    clock = clock or SystemClock()
    log = get_logger("metrics")
    subjects = Subjects(config.nats_subject_root, config.nats_stream_prefix)
    pool = await create_pool(config.require_database_url(), application_name="metrics")
    nc = await connect_nats(config.require_nats_url(), name="metrics")
    try:
        js = nc.jetstream()
        await ensure_streams(js, subjects, config.nats_stream_replicas, config.nats_account_partitions)
        market = MarketHandlers(pool, config.symbols, config.timeframes)
        await market.start()
        refresher = Refresher(
            pool, clock, log, debounce_s=config.metrics_debounce_s,
            interval_s=config.metrics_refresh_interval_s,
        )
        accounts = AccountHandlers(pool, clock, refresher)

        letters = DeadLetters(SERVICE, nc, subjects.dead_letter(SERVICE), subjects=subjects)

        health = Health(SERVICE, checks=connection_checks(
                pool, nc, list(subjects.stream_subjects())))

        def consumer(stream: str, durable: str, filters: list[str], handle: Handle) -> Consumer:
            return Consumer(
                js, pool, subjects.stream(stream), durable, filters, handle, letters, log,
                max_deliver=config.metrics_max_deliver, progress=health.progress(durable),
            )

        market_handle = market_dispatch(subjects, market)
        consumers = [
            consumer(STREAM_MARKET, config.metrics_candle_consumer,
                     [subjects.filter("candle")], market_handle),
            consumer(STREAM_MARKET, config.metrics_market_consumer,
                     [subjects.filter(kind) for kind in MARKET_MODELS if kind != "candle"],
                     market_handle),
            consumer(STREAM_POSITIONS, config.metrics_positions_consumer,
                     [subjects.positions_all], positions_dispatch(subjects, accounts)),
        ]
        async with serving(health, config.health_host, config.health_port), asyncio.TaskGroup() as tasks:
            tasks.create_task(health.watch())
            for c in consumers:
                tasks.create_task(c.run())
            tasks.create_task(refresher.run())
            tasks.create_task(
                run_equity_timer(pool, clock, log, config.metrics_equity_interval_s)
            )
            if config.metrics_retention_interval_s:
                tasks.create_task(run_retention_timer(
                    pool, clock, log, config.metrics_retention_interval_s, config.archive_directory()))
    finally:
        await nc.close()
        await pool.close()
        log.info("metrics_stopped")
