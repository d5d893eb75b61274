"""Reconciliation against okx_sim, with the positions service folding: each difference is an
issue row and an event, healed (backfill first; else a labelled entry), and `aitrader replay`
agrees afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle, run_sim
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import KEY, ingest_settings, place, running, sim_config, stream_messages
from tests.positions.test_replay import run_replay

# No periodic pass and no periodic sweep within a test: each pass is run by the test. The sim's
# clock stands still unless advanced; a balance is stored per (account, as_of), so every change
# the ledger is to see comes a simulated second after the last (`sim.advance(1)`).
QUIET = {"ingest_market_data": False, "ingest_reconcile_s": 3600, "ingest_fill_sweep_s": 3600}


async def _issues(pool: asyncpg.Pool, account_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT kind, subject, expected, found, resolution, resolved_at IS NOT NULL AS resolved,
                  healing FROM aitrader.reconciliation_issues WHERE account_id = $1
           ORDER BY first_seen_at, kind""", account_id)
    return [{**dict(r), "expected": json.loads(r["expected"]), "found": json.loads(r["found"]),
             "healing": json.loads(r["healing"]) if r["healing"] else None} for r in rows]


async def _events(js: JetStreamContext, subjects: Subjects, account_id: UUID) -> list[dict[str, Any]]:
    msgs = await stream_messages(js, subjects, "reconcile", subjects.discrepancy(account_id))
    return [body for _, body, _ in msgs]


async def _replay_identical(settings: Settings) -> None:
    code, out = await run_replay(settings.database_url)
    assert code == 0 and "identical" in out, out


async def _stored(pool: asyncpg.Pool, account_id: UUID, count: int) -> None:
    async def enough() -> bool:
        return await pool.fetchval("SELECT count(*) FROM aitrader.fills WHERE account_id = $1",
                                   account_id) >= count
    await wait_for(enough, timeout=10, message=f"{count} fills stored")


async def test_a_fresh_exchange_under_an_old_ledger_closes_the_zombie_with_a_labelled_entry(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        js: JetStreamContext, subjects: Subjects, positions: None) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None
        account_id = app.account.account_id
        sim.advance(1)
        await place(trader, "BTC-USDT-SWAP", "buy", "1.5")
        await _stored(db_pool, account_id, 1)
    # The exchange forgets everything (a sim without its state); the ledger holds long 1.5.
    async with run_sim(sim_config()) as fresh:
        fresh.advance(60)
        async with running(ingest_settings(settings, fresh, **QUIET)) as app:
            await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        mark = fresh.exchange.mark["BTC-USDT-SWAP"]
    assert await db_pool.fetch("SELECT * FROM aitrader.positions_open WHERE account_id = $1",
                               account_id) == []
    [closed] = await db_pool.fetch(
        "SELECT exit_reason, quantity, exit_price, closing_trade_id FROM aitrader.positions_closed"
        " WHERE account_id = $1", account_id)
    assert closed["exit_reason"] == "reconcile" and closed["quantity"] == Decimal("1.5")
    assert closed["exit_price"] == mark
    issues = {i["kind"]: i for i in await _issues(db_pool, account_id)}
    position = issues["position"]
    assert position["subject"] == "BTC-USDT-SWAP:net" and position["resolution"] == "exchange_wins"
    assert Decimal(position["expected"]["quantity"]) == 0
    assert Decimal(position["found"]["quantity"]) == Decimal("1.5")
    assert [h["trade_id"] for h in position["healing"]] == [closed["closing_trade_id"]]
    assert issues["balance"]["resolution"] == "refreshed"
    events = await _events(js, subjects, account_id)
    assert {(e["kind"], e["status"], e["resolution"]) for e in events} >= {
        ("position", "resolved", "exchange_wins"), ("balance", "resolved", "refreshed")}
    assert await db_pool.fetchval("SELECT last_reconciled_at FROM aitrader.accounts WHERE id = $1",
                                  account_id) is not None
    await _replay_identical(settings)


async def test_a_close_in_the_okx_app_whose_push_is_lost_is_backfilled(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        positions: None) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        sim.advance(1)
        await place(trader, "ETH-USDT-SWAP", "buy", "2")
        await _stored(db_pool, account_id, 1)
        sim.pause_pushes(KEY)
        sim.advance(1)
        await place(trader, "ETH-USDT-SWAP", "sell", "2")  # closed behind the ledger's back
        sim.resume_pushes(KEY)
        report = await app.reconciler.run_once()
    # The lost pushes were the fill, the order's state and the balance: each is healed from REST
    # (the order only when the pass sees it before the backfilled fill's order details land).
    found = {(d.kind, d.status, d.resolution) for d in report.issues}
    assert {("fill", "resolved", "backfill"), ("balance", "resolved", "refreshed")} <= found
    assert found <= {("fill", "resolved", "backfill"), ("balance", "resolved", "refreshed"),
                     ("order", "resolved", "exchange_state")}
    assert set(await db_pool.fetchval(
        "SELECT array_agg(status) FROM aitrader.orders WHERE account_id = $1", account_id)) == {
        "filled"}
    assert await db_pool.fetch("SELECT * FROM aitrader.positions_open WHERE account_id = $1",
                               account_id) == []
    assert await db_pool.fetchval(
        "SELECT exit_reason FROM aitrader.positions_closed WHERE account_id = $1",
        account_id) == "external"
    await _replay_identical(settings)


async def test_an_order_cancelled_without_a_push_takes_the_exchange_state(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        positions: None) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        ord_id = await place(trader, "BTC-USDT-SWAP", "buy", "1", ordType="limit", px="1000")

        async def open_in_ledger() -> bool:
            return await db_pool.fetchval(
                "SELECT status FROM aitrader.orders WHERE exchange_order_id = $1", ord_id) == "open"

        await wait_for(open_in_ledger, timeout=10, message="the resting order in the ledger")
        sim.pause_pushes(KEY)
        [item] = await trader.post("/api/v5/trade/cancel-order",
                                   {"instId": "BTC-USDT-SWAP", "ordId": ord_id})
        assert item["sCode"] == "0"
        sim.resume_pushes(KEY)
        report = await app.reconciler.run_once()
    assert [(d.kind, d.subject, d.resolution) for d in report.issues] == [
        ("order", ord_id, "exchange_state")]
    assert await db_pool.fetchval(
        "SELECT status FROM aitrader.orders WHERE exchange_order_id = $1", ord_id) == "canceled"


async def test_a_ledger_that_agrees_has_no_issue_and_a_second_pass_adds_none(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        positions: None) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        sim.advance(1)
        await place(trader, "BTC-USDT-SWAP", "buy", "1")
        await _stored(db_pool, app.account.account_id, 1)
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        first = await app.reconciler.run_once()
        second = await app.reconciler.run_once()
    assert (first.issues, second.issues) == ([], [])


async def _passes(app: Any) -> bool:
    return bool(app.reconciler is not None and app.reconciler.passes >= 1)


def _env(cfg: Any) -> dict[str, str]:
    """The command's environment: ingest's settings as a user sets them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    for name in ("database_url", "nats_url", "nats_subject_root", "nats_stream_prefix",
                 "okx_rest_url", "account", "account_mode"):
        env[f"AITRADER_{name.upper()}"] = str(getattr(cfg, name))
    for name in ("okx_api_key", "okx_secret_key", "okx_passphrase"):
        env[f"AITRADER_{name.upper()}"] = getattr(cfg, name).get_secret_value()
    return env


async def _reconcile_command(cfg: Any, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from aitrader.cli import main; main()", "reconcile", *args,
        env=_env(cfg), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_reconcile_command_heals_and_says_so(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        positions: None) -> None:
    cfg = ingest_settings(settings, sim, **QUIET)
    async with running(cfg) as app:
        assert app.account is not None
        account_id = app.account.account_id
        sim.advance(1)
        await place(trader, "BTC-USDT-SWAP", "buy", "1")
        await _stored(db_pool, account_id, 1)
    sim.advance(1)
    await place(trader, "BTC-USDT-SWAP", "buy", "2")  # no ingest running: nobody hears it
    code, out = await _reconcile_command(cfg)
    assert code == 0, out
    assert "fill " in out and "backfill" in out and "0 open" in out, out
    assert KEY not in out  # no secret in what it prints
    row = await db_pool.fetchrow("SELECT quantity FROM aitrader.positions_open"
                                 " WHERE account_id = $1", account_id)
    assert row is not None and row["quantity"] == Decimal(3)
    code, out = await _reconcile_command(cfg)
    assert (code, out.strip().splitlines()[-1].endswith("0 healed, 0 open")) == (0, True), out


async def test_the_reconcile_command_refuses_an_unknown_account(
        settings: Settings, sim: SimHandle) -> None:
    code, out = await _reconcile_command(ingest_settings(settings, sim, **QUIET),
                                         "--account", "no-such-account")
    assert code == 2 and len(out.strip().splitlines()) == 1, out
    assert "no account 'no-such-account'" in out


async def test_a_transfer_without_a_push_refreshes_the_balance(
        settings: Settings, sim: SimHandle, db_pool: asyncpg.Pool, positions: None) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.pause_pushes(KEY)
        sim.advance(1)
        cash = sim.transfer(KEY, "-2500.5")  # to the funding account, in the OKX app
        sim.resume_pushes(KEY)
        report = await app.reconciler.run_once()
    assert [(d.kind, d.subject, d.resolution, d.expected) for d in report.issues] == [
        ("balance", "USDT", "refreshed", {"cash": str(cash)})]
    assert await db_pool.fetchval(
        "SELECT cash_usdt FROM aitrader.balance_snapshots WHERE account_id = $1"
        " ORDER BY as_of DESC LIMIT 1", account_id) == cash
