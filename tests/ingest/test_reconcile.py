"""Reconciliation against okx_sim, with the positions service folding: each difference is an
issue row and an event, healed (backfill first; else a labelled entry), and `aitrader replay`
agrees afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from nats.js import JetStreamContext

from services.ingest.okx_rest import OkxRest
from services.okx_sim import SimHandle, run_sim
from services.positions.main import serve as serve_positions
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import KEY, ingest_settings, place, running, sim_config, stream_messages
from tests.positions.test_replay import run_replay

# No periodic pass and no periodic sweep within a test: each pass is run by the test. The sim's
# clock stands still unless advanced; a balance is stored per (account, as_of), so every change
# the ledger is to see comes a simulated second after the last (`sim.advance(1)`).
QUIET = {"ingest_market_data": False, "ingest_reconcile_s": 3600, "ingest_fill_sweep_s": 3600,
         "ingest_reconcile_settle_s": 0.5, "ingest_reconcile_wait_s": 2}


async def _issues(pool: asyncpg.Pool, account_id: UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """SELECT id, kind, subject, expected, found, resolution, resolved_at IS NOT NULL AS resolved,
                  healing FROM aitrader.reconciliation_issues WHERE account_id = $1
           ORDER BY first_seen_at, kind""", account_id)
    return [dict(r) for r in rows]  # jsonb decoded by the pool's codec


def found_resolutions(report: Any) -> set[tuple[str, str | None]]:
    return {(d.kind, d.resolution) for d in report.issues}


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


async def _long_in_the_ledger(settings: Settings, sim: SimHandle, trader: OkxRest,
                              db_pool: asyncpg.Pool) -> UUID:
    """Buy 1.5 BTC through ingest (positions folding): the ledger's long, on `sim`."""
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None
        sim.advance(1)
        await place(trader, "BTC-USDT-SWAP", "buy", "1.5")
        await _stored(db_pool, app.account.account_id, 1)
        return app.account.account_id


async def test_a_fresh_exchange_under_an_old_ledger_closes_the_zombie_with_a_labelled_entry(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        js: JetStreamContext, subjects: Subjects, positions: None) -> None:
    account_id = await _long_in_the_ledger(settings, sim, trader, db_pool)
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
    [attempt] = position["healing"]  # one attempt, one entry: the close
    assert [h["trade_id"] for h in attempt] == [closed["closing_trade_id"]]
    assert issues["balance"]["resolution"] == "refreshed"
    events = await _events(js, subjects, account_id)
    assert {(e["kind"], e["status"], e["resolution"]) for e in events} >= {
        ("position", "resolved", "exchange_wins"), ("balance", "resolved", "refreshed")}
    assert await db_pool.fetchval("SELECT last_reconciled_at FROM aitrader.accounts WHERE id = $1",
                                  account_id) is not None
    await _replay_identical(settings)


async def test_a_close_in_the_okx_app_whose_push_is_lost_is_backfilled(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        js: JetStreamContext, subjects: Subjects, positions: None) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        # The pass after connecting must be over: two passes at once share the open issues (the
        # first to resolve one names its resolution), and the report below would not be the DB's.
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        await place(trader, "ETH-USDT-SWAP", "buy", "2")
        await _stored(db_pool, account_id, 1)
        sim.pause_pushes(KEY)
        sim.advance(1)
        await place(trader, "ETH-USDT-SWAP", "sell", "2")  # closed behind the ledger's back
        sim.resume_pushes(KEY)
        sim.advance(11)  # past the sweep's grace: no push can still be on its way
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
    issues = await _issues(db_pool, account_id)
    assert {(i["kind"], i["resolution"]) for i in issues} == found_resolutions(report)
    events = {(e["kind"], e["status"], e["resolution"]) for e in await _events(js, subjects, account_id)}
    assert found <= events  # each issue's end is on the RECONCILE stream
    await _replay_identical(settings)


async def test_an_order_cancelled_without_a_push_takes_the_exchange_state(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        js: JetStreamContext, subjects: Subjects, positions: None) -> None:
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
    [issue] = await _issues(db_pool, app.account.account_id)
    assert (issue["kind"], issue["subject"], issue["resolution"], issue["expected"],
            issue["found"]) == ("order", ord_id, "exchange_state", {"state": "canceled"},
                                {"state": "open"})
    [event] = await _events(js, subjects, app.account.account_id)
    assert (event["issue_id"], event["status"]) == (str(issue["id"]), "resolved")
    await _replay_identical(settings)


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
    sim.advance(11)  # past the sweep's grace
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
        settings: Settings, sim: SimHandle, db_pool: asyncpg.Pool, js: JetStreamContext,
        subjects: Subjects, positions: None) -> None:
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
        " ORDER BY as_of DESC LIMIT 1", account_id) == cash  # the healing entry: a snapshot
    [issue] = await _issues(db_pool, account_id)
    assert (issue["kind"], issue["resolution"], issue["expected"]) == (
        "balance", "refreshed", {"cash": str(cash)})
    assert [(e["issue_id"], e["status"]) for e in await _events(js, subjects, account_id)] == [
        (str(issue["id"]), "resolved")]
    await _replay_identical(settings)


@contextlib.asynccontextmanager
async def _positions_service(settings: Settings) -> AsyncIterator[None]:
    task = asyncio.create_task(serve_positions(settings))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_ledger_behind_the_exchange_is_waited_for_not_corrected(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool) -> None:
    """Positions is down: the exchange holds a fill the ledger has not folded yet. The
    difference is recorded and left open — no labelled entry on top of the real fill (the
    position would double) — and it vanishes once positions has caught up."""
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        await place(trader, "BTC-USDT-SWAP", "buy", "1")  # pushed, but nobody folds it yet
        sim.advance(11)
        behind = await app.reconciler.run_once()
        async with _positions_service(settings):
            await _stored(db_pool, account_id, 1)
            after = await app.reconciler.run_once()
        row = await db_pool.fetchrow("SELECT quantity FROM aitrader.positions_open"
                                     " WHERE account_id = $1", account_id)
    assert ("position", "open") in {(d.kind, d.status) for d in behind.issues}
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.fills WHERE account_id = $1"
                                  " AND category = 'reconcile'", account_id) == 0
    assert row is not None and row["quantity"] == Decimal(1)  # not 2
    assert ("position", "resolved", "vanished") in {(d.kind, d.status, d.resolution)
                                                    for d in after.issues}
    assert await db_pool.fetchval("SELECT count(*) FROM aitrader.reconciliation_issues"
                                  " WHERE account_id = $1 AND resolved_at IS NULL", account_id) == 0


async def test_an_entry_not_yet_folded_is_not_made_twice(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool) -> None:
    """The exchange wins (a fresh exchange under an old ledger) while positions is down: the
    labelled close is published once; later passes wait for it instead of adding another."""
    async with _positions_service(settings):
        account_id = await _long_in_the_ledger(settings, sim, trader, db_pool)
    async with run_sim(sim_config()) as fresh:
        fresh.advance(60)
        async with running(ingest_settings(settings, fresh, **QUIET)) as app:
            assert app.reconciler is not None
            await wait_for(lambda: _passes(app), timeout=30, message="the first pass")
            again = await app.reconciler.run_once()  # the entry is still unfolded
            async with _positions_service(settings):
                async def flat() -> bool:
                    return not await db_pool.fetch(
                        "SELECT 1 FROM aitrader.positions_open WHERE account_id = $1", account_id)
                await wait_for(flat, timeout=15, message="the labelled close folded")
                last = await app.reconciler.run_once()
    entries = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills WHERE"
                                  " account_id = $1 AND category = 'reconcile'", account_id)
    assert len(entries) == 1 and entries[0]["exchange_trade_id"].endswith("-1-1")
    assert ("position", "open") in {(d.kind, d.status) for d in again.issues}
    assert ("position", "resolved", "vanished") in {(d.kind, d.status, d.resolution)
                                                    for d in last.issues}


async def test_an_order_the_exchange_does_not_know_does_not_stop_the_pass(
        settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool,
        positions: None) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None
        account_id = app.account.account_id
        ord_id = await place(trader, "BTC-USDT-SWAP", "buy", "1", ordType="limit", px="1000")

        async def open_in_ledger() -> bool:
            return await db_pool.fetchval(
                "SELECT status FROM aitrader.orders WHERE exchange_order_id = $1", ord_id) == "open"

        await wait_for(open_in_ledger, timeout=10, message="the resting order in the ledger")
    async with run_sim(sim_config()) as fresh:  # an exchange that never saw that order
        fresh.advance(60)
        async with running(ingest_settings(settings, fresh, **QUIET)) as app:
            assert app.reconciler is not None
            report = await app.reconciler.run_once()
    found = {(d.kind, d.subject, d.status) for d in report.issues}
    assert ("order", ord_id, "open") in found  # recorded, not healed: nothing says its end
    assert report.failed == []  # the later stages (balance) ran; the pass counts as done
    assert await db_pool.fetchval("SELECT last_reconciled_at FROM aitrader.accounts"
                                  " WHERE id = $1", account_id) is not None


async def test_the_reconcile_command_with_okx_unreachable_says_so_without_a_traceback(
        settings: Settings, sim: SimHandle, db_pool: asyncpg.Pool) -> None:
    from tests.factories import create_account
    from tests.ingest.conftest import ACCOUNT

    await create_account(db_pool, ACCOUNT)
    cfg = ingest_settings(settings, sim, **QUIET).model_copy(
        update={"okx_rest_url": "http://127.0.0.1:1", "ingest_rest_timeout_s": 1})
    code, out = await _reconcile_command(cfg)
    assert code == 1, out
    assert "not completed: fills, positions, orders, algo, balance" in out
    assert "Traceback" not in out
    assert await db_pool.fetchval("SELECT last_reconciled_at FROM aitrader.accounts"
                                  " WHERE external_id = $1", ACCOUNT) is None  # not a pass
