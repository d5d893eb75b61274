"""Ingest: the one place that wires OKX (REST + three websockets), NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from uuid import UUID

from nats.aio.client import Client

from services.ingest.algo_backfill import AlgoBackfill
from services.ingest.algo_orders import AlgoCommands
from services.ingest.backfill import Backfiller
from services.ingest.config import IngestSettings
from services.ingest.instruments import load_instruments, refresh_daily
from services.ingest.normalize import AccountRef
from services.ingest.okx_rest import OkxRest
from services.ingest.okx_ws import ConnectLimiter, FrameStats, OkxWebSocket, WsOptions
from services.ingest.orders import OrderHandler
from services.ingest.publisher import Publisher
from services.ingest.reconcile_store import ReconcileStore
from services.ingest.reconciler import Reconciler, reconcile_loop
from services.ingest.refresh import RefreshHandler
from services.ingest.repository import Repository
from services.ingest.responder import Responder
from services.ingest.signing import Credentials
from services.ingest.streams import AccountSink, CandleSink, PublicSink
from shared.bus import connect_nats, ensure_streams
from shared.db import create_pool
from shared.errors import ConfigError
from shared.health import Check, Health, connection_checks, serving
from shared.logging import get_logger, register_secrets
from shared.messages import AmendAlgo, CancelAlgo, PlaceAlgo
from shared.settings import Settings
from shared.subjects import Subjects
from shared.types import WsEndpoint

SETTINGS_CLASS = IngestSettings
PUBLIC_CHANNELS = ("tickers", "mark-price", "funding-rate", "open-interest")
PRIVATE_ARGS = ({"channel": "orders", "instType": "SWAP"},
                {"channel": "positions", "instType": "SWAP"},
                {"channel": "account"}, {"channel": "balance_and_position"})
ALGO_ARG = {"channel": "orders-algo", "instType": "SWAP"}  # business socket, after login
log = get_logger("ingest")


def credentials(cfg: Settings) -> Credentials | None:
    if not (cfg.okx_api_key and cfg.okx_secret_key and cfg.okx_passphrase):
        return None
    return Credentials(cfg.okx_api_key, cfg.okx_secret_key, cfg.okx_passphrase)


class Ingest:
    """A running ingest process: its sockets, handlers and counters (tests look inside)."""

    def __init__(self, settings: Settings) -> None:
        self.cfg = settings if isinstance(settings, IngestSettings) else IngestSettings(
            **settings.model_dump())
        register_secrets(self.cfg.secret_values())
        if self.cfg.has_okx_keys and not self.cfg.account:
            raise ConfigError("AITRADER_ACCOUNT", "required when OKX keys are given")
        self.subjects = Subjects(self.cfg.nats_subject_root, self.cfg.nats_stream_prefix)
        self.stats = FrameStats()
        self.sockets: list[OkxWebSocket] = []
        self.account: AccountRef | None = None
        self.orders: OrderHandler | None = None
        self.algo_backfill: AlgoBackfill | None = None
        self.backfiller: Backfiller | None = None
        self.reconciler: Reconciler | None = None
        self.health = Health("ingest")
        self.started = asyncio.Event()
        self._limiter = ConnectLimiter()

    async def ready(self) -> None:
        """Wait until every socket is subscribed and caught up (tests, benchmarks)."""
        await self.started.wait()
        for sock in self.sockets:
            await sock.ready.wait()

    async def run(self) -> None:
        """Run until cancelled; everything opened here is closed in `finally`."""
        cfg = self.cfg
        async with AsyncExitStack() as stack:
            pool = await create_pool(cfg.require_database_url(), application_name="ingest")
            stack.push_async_callback(pool.close)
            nc = await connect_nats(cfg.require_nats_url(), name="ingest")
            stack.push_async_callback(nc.close)
            creds = credentials(cfg)
            rest = OkxRest(cfg.okx_rest_url, creds=creds, timeout_s=cfg.ingest_rest_timeout_s,
                           simulated=cfg.account_mode == "simulated")
            stack.push_async_callback(rest.aclose)
            js = nc.jetstream()
            await ensure_streams(js, self.subjects, cfg.nats_stream_replicas, cfg.nats_account_partitions)
            repo = Repository(pool)
            if cfg.account:
                account_id = await repo.upsert_account(cfg.account, cfg.account_mode)
                self.account = AccountRef(account_id, cfg.account_mode)
            await load_instruments(rest, repo)
            publisher = Publisher(js, self.subjects)
            backfiller = Backfiller(rest, repo, publisher, self.stats, self.account,
                                    cfg.ingest_backfill_candles)
            self.backfiller = backfiller
            health = self.health = Health("ingest", checks=connection_checks(
                pool, nc, list(self.subjects.stream_subjects())))
            await stack.enter_async_context(serving(health, cfg.health_host, cfg.health_port))
            await self._serve(stack, nc, rest, repo, publisher, backfiller, creds)

    async def _serve(self, stack: AsyncExitStack, nc: Client, rest: OkxRest, repo: Repository,
                     publisher: Publisher, backfiller: Backfiller,
                     creds: Credentials | None) -> None:
        cfg = self.cfg
        if cfg.ingest_market_data:
            self._socket(stack, "public", [{"channel": c, "instId": s} for s in cfg.symbols
                                           for c in PUBLIC_CHANNELS],
                         PublicSink(publisher, backfiller, self.stats))
            refresh = RefreshHandler(backfiller)
            stack.push_async_callback(refresh.close)
            sub = await nc.subscribe(self.subjects.market_data_refresh(), queue="ingest-market",
                                     cb=refresh.on_message)
            stack.push_async_callback(sub.unsubscribe)
        account_side = creds is not None and self.account is not None
        self._business(stack, rest, publisher, backfiller, creds if account_side else None)
        if account_side:
            assert creds is not None
            await self._account_side(stack, nc, rest, repo, publisher, backfiller, creds)
        else:
            log.warning("ingest_market_data_only", reason="no OKX keys: no account streams, "
                        "no order placement")
        tasks = [asyncio.create_task(s.run(), name=f"ws-{s.name}") for s in self.sockets]
        tasks.append(asyncio.create_task(refresh_daily(rest, repo,
                                                       cfg.ingest_instruments_refresh_s)))
        log.info("ingest_started", account=cfg.account, mode=cfg.account_mode,
                 market_data=cfg.ingest_market_data, symbols=cfg.symbols, bars=cfg.timeframes)
        self.started.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _business(self, stack: AsyncExitStack, rest: OkxRest, publisher: Publisher,
                  backfiller: Backfiller, creds: Credentials | None) -> None:
        """/ws/v5/business: candles (market data), and orders-algo (logged in, an account)."""
        cfg = self.cfg
        symbols, bars = (cfg.symbols, cfg.timeframes) if cfg.ingest_market_data else ([], [])
        args = [{"channel": f"candle{b}", "instId": s} for s in symbols for b in bars]
        algo = None
        if creds is not None and self.account is not None:
            args.append(dict(ALGO_ARG))
            algo = self.algo_backfill = AlgoBackfill(rest, publisher, self.stats, self.account)
        if args:
            self._socket(stack, "business", args, CandleSink(
                publisher, backfiller, self.stats, symbols, bars, self.account if algo else None,
                algo), creds)

    def _socket(self, stack: AsyncExitStack, name: WsEndpoint,
                args: list[dict[str, str]], sink: PublicSink | CandleSink | AccountSink,
                creds: Credentials | None = None) -> None:
        cfg = self.cfg
        opts = WsOptions(ping_after_s=cfg.ingest_ping_after_s,
                         pong_timeout_s=cfg.ingest_pong_timeout_s,
                         backoff_initial_s=cfg.ingest_backoff_initial_s,
                         backoff_max_s=cfg.ingest_backoff_max_s)
        stack.push_async_callback(sink.close)
        sock = OkxWebSocket(name, cfg.ws_url(name), args, sink, creds=creds, options=opts,
                            limiter=self._limiter, stats=self.stats)
        self.sockets.append(sock)
        self.health.checks[f"okx_ws_{name}"] = _subscribed(sock)  # red while it reconnects

    async def _account_side(self, stack: AsyncExitStack, nc: Client, rest: OkxRest,
                            repo: Repository, publisher: Publisher, backfiller: Backfiller,
                            creds: Credentials) -> None:
        assert self.account is not None
        account = self.account
        orders = OrderHandler(rest, repo, account.account_id, self.cfg.ingest_order_timeout_s)
        self.orders = orders

        async def refresh_config() -> None:
            data = await rest.get("/api/v5/account/config", signed=True)
            pos_mode = data[0].get("posMode") if data and isinstance(data[0], dict) else None
            if pos_mode in ("net_mode", "long_short_mode"):
                orders.pos_mode = pos_mode
                await repo.set_pos_mode(account.account_id, pos_mode)

        await refresh_config()
        self.reconciler = Reconciler(rest, ReconcileStore(repo.pool, account.account_id),
                                     publisher, backfiller, account,
                                     timedelta(seconds=self.cfg.ingest_reconcile_lookback_s),
                                     self.cfg.ingest_reconcile_settle_s,
                                     self.cfg.ingest_reconcile_wait_s)
        wake = asyncio.Event()
        sink = AccountSink(publisher, backfiller, self.stats, account, refresh_config,
                           timedelta(seconds=self.cfg.ingest_fill_sweep_s),
                           timedelta(seconds=self.cfg.ingest_fill_sweep_lookback_s), wake.set)
        looping = asyncio.create_task(reconcile_loop(self.reconciler, wake,
                                                     self.cfg.ingest_reconcile_s))
        stack.callback(looping.cancel)
        self._socket(stack, "private", [dict(a) for a in PRIVATE_ARGS], sink, creds)
        timeout, pos_mode = self.cfg.ingest_order_timeout_s, lambda: orders.pos_mode
        handlers: list[tuple[Callable[[UUID], str], Responder]] = [
            (self.subjects.place_order, orders),
            (self.subjects.place_algo, AlgoCommands(PlaceAlgo, rest, repo, account.account_id,
                                                    pos_mode, timeout)),
            (self.subjects.amend_algo, AlgoCommands(AmendAlgo, rest, repo, account.account_id,
                                                    pos_mode, timeout)),
            (self.subjects.cancel_algo, AlgoCommands(CancelAlgo, rest, repo, account.account_id,
                                                     pos_mode, timeout)),
        ]
        await self._serve_commands(stack, nc, account.account_id, handlers)

    async def _serve_commands(self, stack: AsyncExitStack, nc: Client, account_id: UUID,
                              handlers: list[tuple[Callable[[UUID], str], Responder]]) -> None:
        """One core-NATS subscription per command subject of this account."""
        for subject, handler in handlers:
            stack.push_async_callback(handler.close)
            sub = await nc.subscribe(subject(account_id), cb=handler.on_message)
            stack.push_async_callback(sub.unsubscribe)


def _subscribed(sock: OkxWebSocket) -> Check:
    async def check() -> bool:
        return sock.ready.is_set()
    return check


async def serve(settings: Settings) -> None:
    """Run ingest until cancelled (`python -m services.ingest`, `aitrader run ingest`)."""
    await Ingest(settings).run()
