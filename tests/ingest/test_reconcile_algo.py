"""Reconciliation's algo stage against okx_sim, with the positions service folding: an orphan
algo is cancelled on the exchange and recorded, a stored plan with nothing resting is recorded
open until an algo rests (or the position is gone), a stop over a position only the exchange
knows of is left alone, and an algo whose push was lost is stored without an issue."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from nats.js import JetStreamContext

from services.ingest.fields import AccountRef, BadFrame
from services.ingest.okx_rest import OkxRest
from services.ingest.reconciler import Reconciler
from services.okx_sim import SimHandle
from shared.settings import Settings
from shared.subjects import Subjects
from tests.factories import wait_for
from tests.ingest.conftest import KEY, ingest_settings, place, running
from tests.ingest.test_algo import algo_row, off_price
from tests.ingest.test_reconcile import QUIET, _events, _issues, _passes

BTC, ETH = "BTC-USDT-SWAP", "ETH-USDT-SWAP"


def _seen(report: Any) -> list[tuple[str, str, str, str | None]]:
    return [(d.kind, d.subject, d.status, d.resolution) for d in report.issues]


async def _standalone(trader: OkxRest, inst: str, side: str, sl: Decimal, **extra: Any) -> str:
    """A stop placed on the exchange directly (as the gateway or the OKX app would)."""
    item = await trader.post_item(
        "/api/v5/trade/order-algo",
        {
            "instId": inst,
            "tdMode": "cross",
            "side": side,
            "ordType": "conditional",
            "slTriggerPx": str(sl),
            "slOrdPx": "-1",
            **extra,
        },
    )
    assert item["sCode"] == "0", item
    return str(item["algoId"])


async def _book_position(pool: asyncpg.Pool, account_id: Any, present: bool) -> None:
    """Wait for the book to hold a position (or none), its orders all final: the pass is then
    to find differences of algo orders only."""

    async def there() -> bool:
        found = await pool.fetchval(
            "SELECT count(*) FROM aitrader.positions_open WHERE account_id = $1", account_id
        )
        unfinished = await pool.fetchval(
            "SELECT count(*) FROM aitrader.orders WHERE account_id = $1 AND status <> 'filled'", account_id
        )
        return bool(found) == present and unfinished == 0

    await wait_for(there, timeout=10, message=f"a position in the book: {present}")


@pytest.mark.parametrize("pos_mode", ["net_mode", "long_short_mode"])
async def test_a_stop_left_behind_after_a_close_is_cancelled_and_recorded(
    pos_mode: str,
    settings: Settings,
    sim: SimHandle,
    trader: OkxRest,
    db_pool: asyncpg.Pool,
    js: JetStreamContext,
    subjects: Subjects,
    positions: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OKX may leave a sized reduce-only stop resting after its position closed; the sim
    cancels it with the position, so the test turns that reaction off (its AlgoBook's
    `_cancel_orphans`) to leave the orphan the way OKX would. The positions service's safety
    net cancels the live algos the book knows of when it folds the close, so this stop's push
    is lost (the book never hears of it): only reconciliation can find it. In long/short mode
    the long slot's sell closes it, reduce-only or not."""
    monkeypatch.setattr(sim.exchange.algos, "_cancel_orphans", lambda acct: [])
    await trader.post("/api/v5/account/set-position-mode", {"posMode": pos_mode})
    slot = {"reduceOnly": True} if pos_mode == "net_mode" else {"posSide": "long"}
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        opening = {} if pos_mode == "net_mode" else {"posSide": "long"}
        await place(trader, BTC, "buy", "2", **opening)
        await _book_position(db_pool, account_id, present=True)
        sim.pause_pushes(KEY)
        algo_id = await _standalone(trader, BTC, "sell", off_price(sim, "0.9"), sz="2", **slot)
        sim.resume_pushes(KEY)
        sim.advance(1)
        await place(trader, BTC, "sell", "2", **opening)  # closed; the stop stays behind
        await _book_position(db_pool, account_id, present=False)
        assert sim.exchange.accounts[KEY].algos[algo_id].state == "live"
        report = await app.reconciler.run_once()
        assert sim.exchange.accounts[KEY].algos[algo_id].state == "canceled"
        await algo_row(db_pool, account_id, algo_id, state="canceled")  # the push, stored
        again = await app.reconciler.run_once()
    assert _seen(report) == [("algo", algo_id, "resolved", "canceled")]
    assert again.issues == [] and report.failed == []
    [issue] = await _issues(db_pool, account_id)
    assert (issue["kind"], issue["subject"], issue["resolution"]) == ("algo", algo_id, "canceled")
    assert issue["found"] == {"position": None}
    assert {k: issue["expected"][k] for k in ("inst_id", "pos_side", "side", "sz")} == {
        "inst_id": BTC,
        "pos_side": "net" if pos_mode == "net_mode" else "long",
        "side": "sell",
        "sz": "2",
    }
    assert [(e["kind"], e["status"], e["resolution"]) for e in await _events(js, subjects, account_id)] == [
        ("algo", "resolved", "canceled")
    ]


async def test_a_stop_the_exchange_cancels_during_the_pause_is_neither_cancelled_nor_recorded(
    settings: Settings,
    sim: SimHandle,
    trader: OkxRest,
    db_pool: asyncpg.Pool,
    positions: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The orphan of the first look is gone when the pass looks again after its pause (OKX
    cancelled it itself, a moment after the close): nothing to cancel, nothing to record."""
    monkeypatch.setattr(sim.exchange.algos, "_cancel_orphans", lambda acct: [])
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        await place(trader, BTC, "buy", "1")
        await _book_position(db_pool, account_id, present=True)
        sim.pause_pushes(KEY)  # unknown to the book, so the positions service cannot cancel it
        algo_id = await _standalone(trader, BTC, "sell", off_price(sim, "0.9"), sz="1", reduceOnly=True)
        sim.resume_pushes(KEY)
        sim.advance(1)
        await place(trader, BTC, "sell", "1")
        await _book_position(db_pool, account_id, present=False)
        pauses: list[str] = []

        async def pause() -> None:  # the exchange's own cancel lands during the pause
            pauses.append(sim.exchange.accounts[KEY].algos[algo_id].state)
            item = await trader.post_item("/api/v5/trade/cancel-algos", [{"instId": BTC, "algoId": algo_id}])
            assert item["sCode"] == "0", item

        monkeypatch.setattr(app.reconciler, "settle", pause)
        report = await app.reconciler.run_once()
    assert pauses == ["live"]  # the first look saw the orphan
    assert report.issues == [] and report.failed == []
    assert await _issues(db_pool, account_id) == []


@pytest.mark.parametrize("healing", ["an algo placed", "the position closed"])
async def test_a_stored_plan_with_nothing_resting_is_open_until_it_rests_or_the_position_goes(
    settings: Settings,
    sim: SimHandle,
    trader: OkxRest,
    db_pool: asyncpg.Pool,
    js: JetStreamContext,
    subjects: Subjects,
    positions: None,
    healing: str,
) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        await place(trader, BTC, "buy", "1")
        await _book_position(db_pool, account_id, present=True)
        stop = off_price(sim, "0.9")
        await db_pool.execute(  # as update_exit_plan stores it; its placement never happened
            "UPDATE aitrader.positions_open SET exit_plan = $2 WHERE account_id = $1",
            account_id,
            {"stop_loss": str(stop), "version": 2},
        )
        first = await app.reconciler.run_once()
        second = await app.reconciler.run_once()  # still nothing resting: the same issue
        sim.advance(1)
        if healing == "an algo placed":
            algo_id = await _standalone(trader, BTC, "sell", stop, closeFraction="1", reduceOnly=True)
            await algo_row(db_pool, account_id, algo_id, state="live")
        else:
            await place(trader, BTC, "sell", "1")
            await _book_position(db_pool, account_id, present=False)
        last = await app.reconciler.run_once()
    subject = f"{BTC}:net"
    assert _seen(first) == _seen(second) == [("algo", subject, "open", None)]
    assert (first.issues[0].expected, first.issues[0].found) == (
        {"algo": None},
        {"take_profit": None, "stop_loss": str(stop), "version": 2},
    )
    assert first.issues[0].issue_id == second.issues[0].issue_id
    assert _seen(last) == [("algo", subject, "resolved", "vanished")]
    [issue] = await _issues(db_pool, account_id)
    assert (issue["id"], issue["resolution"]) == (first.issues[0].issue_id, "vanished")
    # one event per issue and status (the second pass's "open" has the first one's message id)
    assert [(e["issue_id"], e["status"]) for e in await _events(js, subjects, account_id)] == [
        (str(issue["id"]), "open"),
        (str(issue["id"]), "resolved"),
    ]


async def test_a_healthy_account_records_nothing(
    settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool, positions: None
) -> None:
    """A long with its plan resting (attached at entry), and a buy stop with no position
    that would open one (not a closing algo: never an orphan)."""
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        tp, sl = off_price(sim, "1.1"), off_price(sim, "0.9")
        await place(
            trader,
            BTC,
            "buy",
            "1",
            attachAlgoOrds=[
                {
                    "tpTriggerPx": str(tp),
                    "tpOrdPx": "-1",
                    "slTriggerPx": str(sl),
                    "slOrdPx": "-1",
                    "slTriggerPxType": "mark",
                }
            ],
        )
        await _book_position(db_pool, account_id, present=True)
        await db_pool.execute(
            "UPDATE aitrader.positions_open SET exit_plan = $2 WHERE account_id = $1",
            account_id,
            {"take_profit": str(tp), "stop_loss": str(sl), "version": 1},
        )
        eth_last = sim.exchange.last[ETH]
        opener = await _standalone(trader, ETH, "buy", eth_last * 2, sz="1")
        await algo_row(db_pool, account_id, opener, state="live")
        first = await app.reconciler.run_once()
        second = await app.reconciler.run_once()
    assert (first.issues, second.issues, first.failed) == ([], [], [])
    algos = sim.exchange.accounts[KEY].algos.values()
    assert [a.state for a in algos] == ["live", "live"]


async def test_a_stop_over_a_position_only_the_exchange_holds_is_not_an_orphan(
    settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool
) -> None:
    """Positions is down: the book has not folded the entry, so it holds no position, but the
    exchange does. The stop protects it: a position difference, never cancelled here."""
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        await place(
            trader,
            BTC,
            "buy",
            "1",
            attachAlgoOrds=[{"slTriggerPx": str(off_price(sim, "0.9")), "slOrdPx": "-1"}],
        )
        sim.advance(11)
        report = await app.reconciler.run_once()
    [algo] = sim.exchange.accounts[KEY].algos.values()
    assert algo.state == "live"
    found = {(d.kind, d.status) for d in report.issues}
    assert ("position", "open") in found and "algo" not in {k for k, _ in found}


async def test_an_algo_whose_push_was_lost_is_stored_without_an_issue(
    settings: Settings, sim: SimHandle, trader: OkxRest, db_pool: asyncpg.Pool, positions: None
) -> None:
    async with running(ingest_settings(settings, sim, **QUIET)) as app:
        assert app.account is not None and app.reconciler is not None
        account_id = app.account.account_id
        await wait_for(lambda: _passes(app), timeout=30, message="the pass after connecting")
        sim.advance(1)
        await place(trader, BTC, "buy", "1")
        await _book_position(db_pool, account_id, present=True)
        sim.pause_pushes(KEY)
        algo_id = await _standalone(
            trader, BTC, "sell", off_price(sim, "0.9"), closeFraction="1", reduceOnly=True
        )
        sim.resume_pushes(KEY)
        report = await app.reconciler.run_once()
        row = await algo_row(db_pool, account_id, algo_id, state="live")
    assert report.issues == []
    assert row["close_fraction"] == 1


class _OneBadPosition:
    """An OKX whose positions answer holds one row that cannot be read (no `pos`)."""

    async def get(self, path: str, params: Any = None, *, signed: bool = False) -> list[Any]:
        assert path == "/api/v5/account/positions"
        return [{"instId": BTC, "posSide": "net", "uTime": "1767225600000", "avgPx": "100"}]


async def test_an_unreadable_position_row_fails_the_algo_comparison_instead_of_looking_flat() -> None:
    """The positions stage skips such a row; the algo stage must not: its stop would look
    like an orphan and be cancelled."""
    rc = Reconciler(
        _OneBadPosition(),
        None,
        None,
        None,  # type: ignore[arg-type]
        AccountRef(uuid4(), "simulated"),
        timedelta(days=1),
    )
    assert await rc.exchange_holdings() == {}
    with pytest.raises(BadFrame):
        await rc.exchange_holdings(strict=True)
