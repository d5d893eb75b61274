"""`make up`, trade, Ctrl-C, `make up`: the position is still there on both sides — the ledger
and the exchange (okx_sim keeps its state in the data directory) — and it can be closed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr

from aitrader.embedded import free_port
from services.ingest.okx_rest import OkxRest
from services.ingest.signing import Credentials
from tests.factories import wait_for
from tests.foundation.test_up import UpProcess, clean_env
from tests.servers import scratch_dir

BTC = "BTC-USDT-SWAP"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with scratch_dir("aitrader-up-remembers-") as path:
        yield path


async def _up(data_dir: Path, pg: int, nats: int) -> UpProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aitrader.cli", "up", "--market", "sim",
        "--services", "ingest,positions", "--data-dir", str(data_dir),
        env=clean_env(AITRADER_EMBEDDED_PG_PORT=str(pg), AITRADER_EMBEDDED_NATS_PORT=str(nats),
                      AITRADER_SYMBOLS=BTC, AITRADER_TIMEFRAMES="1m",
                      AITRADER_INGEST_RECONCILE_S="3600"),
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    return UpProcess(process)


def _trader(data_dir: Path, sim: dict[str, object]) -> OkxRest:
    key, secret, phrase = (data_dir / "okx-sim" / "key").read_text().split()
    return OkxRest(str(sim["url"]), creds=Credentials(SecretStr(key), SecretStr(secret),
                                                      SecretStr(phrase)), simulated=True)


async def _held(trader: OkxRest) -> Decimal:
    rows = await trader.get("/api/v5/account/positions", {"instType": "SWAP"}, signed=True)
    return sum((Decimal(r["pos"]) for r in rows if r["instId"] == BTC), Decimal(0))


async def _ledger(dsn: str, want: Decimal | None) -> None:
    async def there() -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            qty = await conn.fetchval(
                "SELECT quantity FROM aitrader.positions_open WHERE symbol = $1", BTC)
        finally:
            await conn.close()
        return qty == want
    await wait_for(there, timeout=30, message=f"the ledger holds {want} {BTC}")


async def test_a_position_outlives_a_restart_on_both_sides_and_can_be_closed(
        data_dir: Path) -> None:
    pg, nats = free_port(), free_port()
    up = await _up(data_dir, pg, nats)
    try:
        ready = await up.wait_for_event("ready", timeout=90)
        dsn = str(ready["database"])
        trader = _trader(data_dir, await _sim_line(up))
        placed = await trader.place_order({"instId": BTC, "tdMode": "cross", "side": "buy",
                                           "ordType": "market", "sz": "1.5"})
        assert placed["sCode"] == "0", placed
        await _ledger(dsn, Decimal("1.5"))
        await trader.aclose()
    finally:
        assert await up.interrupt() == 0

    again = await _up(data_dir, pg, nats)
    try:
        await again.wait_for_event("ready", timeout=90)
        trader = _trader(data_dir, await _sim_line(again))
        assert await _held(trader) == Decimal("1.5")  # the exchange remembers
        await _ledger(dsn, Decimal("1.5"))
        closed = await trader.place_order({"instId": BTC, "tdMode": "cross", "side": "sell",
                                           "ordType": "market", "sz": "1.5", "reduceOnly": True})
        assert closed["sCode"] == "0", closed  # not 51148: there is a position to reduce
        await _ledger(dsn, None)
        assert await _held(trader) == 0
        await trader.aclose()
        # A reconciliation pass may be running (one starts when ingest connects, and the trades
        # above came during it): whatever it opened, it heals within its bounded waits.
        last: list[dict[str, object]] = []

        async def healed() -> bool:
            nonlocal last
            conn = await asyncpg.connect(dsn)
            try:
                last = [dict(r) for r in await conn.fetch(
                    "SELECT kind, subject, expected, found FROM aitrader.reconciliation_issues"
                    " WHERE resolved_at IS NULL")]
            finally:
                await conn.close()
            return not last

        try:
            await wait_for(healed, timeout=40, message="no open reconciliation issue")
        except AssertionError:
            raise AssertionError(f"open reconciliation issues: {last}") from None
        conn = await asyncpg.connect(dsn)
        try:
            reasons = await conn.fetch("SELECT exit_reason FROM aitrader.positions_closed")
        finally:
            await conn.close()
        assert [r["exit_reason"] for r in reasons] == ["external"]  # closed by the trade
    finally:
        assert await again.interrupt() == 0


async def _sim_line(up: UpProcess) -> dict[str, object]:
    found = [line for line in up.lines if line.get("event") == "okx_sim"]
    assert found, "up logged no okx_sim line before ready"
    return found[-1]
