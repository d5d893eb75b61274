"""okx_sim remembers: a restart on the same state file serves the same exchange (issue 15)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.okx_sim import AccountSpec, SimConfig, SimHandle, run_sim
from services.okx_sim.auth import rest_prehash, sign
from services.okx_sim.config import instrument_for
from services.okx_sim.saving import Saver, lock
from services.okx_sim.state import StateError

from .conftest import KEY, PASSPHRASE, SECRET, START_MS, base_config

BTC = "BTC-USDT-SWAP"
OTHER = AccountSpec("other-key", "other-secret", "Other-Pass1", D("500"))


@dataclass
class Okx:
    """A signed REST client for one key."""

    client: httpx.AsyncClient
    spec: AccountSpec

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
        raw = json.dumps(body).encode() if body is not None else b""
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers = {"OK-ACCESS-KEY": self.spec.api_key, "OK-ACCESS-TIMESTAMP": ts,
                   "OK-ACCESS-SIGN": sign(self.spec.secret, rest_prehash(ts, method, path, raw)),
                   "OK-ACCESS-PASSPHRASE": self.spec.passphrase,
                   "x-simulated-trading": "0" if self.spec.live else "1",  # demo keys by default
                   "Content-Type": "application/json"}
        resp = await self.client.request(method, path, content=raw, headers=headers)
        result: dict[str, Any] = resp.json()
        return result

    async def get(self, path: str) -> list[dict[str, Any]]:
        answer = await self.call("GET", path)
        assert answer["code"] == "0", answer
        data: list[dict[str, Any]] = answer["data"]
        return data

    async def order(self, **fields: str) -> dict[str, Any]:
        body = {"instId": BTC, "tdMode": "cross", "ordType": "market", **fields}
        return await self.call("POST", "/api/v5/trade/order", body)


def config(path: Path, **overrides: Any) -> SimConfig:
    """Frozen clock, one key; BTC depth 1 contract per level, so 2.5 contracts fill in 3 parts."""
    btc = replace(instrument_for(BTC), depth_sz=D("1"))
    return base_config(None, symbols=(BTC,), instruments=(btc,), state_file=str(path),
                       **overrides)


def doc(path: Path) -> dict[str, Any]:
    """The state file's JSON (sync: read between awaits)."""
    parsed: dict[str, Any] = json.loads(path.read_text())
    return parsed


def damage(path: Path, how: Callable[[str], str]) -> None:
    path.write_text(how(path.read_text()))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "okx-sim.json"


@contextlib.asynccontextmanager
async def serving(cfg: SimConfig, spec: AccountSpec | None = None
                  ) -> AsyncIterator[tuple[SimHandle, Okx]]:
    """A simulator on `cfg` and a signed client for `spec` (the test key by default)."""
    spec = spec or AccountSpec(KEY, SECRET, PASSPHRASE)
    async with run_sim(cfg) as sim, httpx.AsyncClient(base_url=sim.rest_url) as client:
        yield sim, Okx(client, spec)


VIEWS = ("/api/v5/account/positions", "/api/v5/account/balance",
         "/api/v5/trade/fills-history?instType=SWAP", "/api/v5/account/bills",
         "/api/v5/trade/orders-pending", "/api/v5/account/config",
         f"/api/v5/account/leverage-info?instId={BTC}&mgnMode=cross")


async def views(okx: Okx) -> dict[str, list[dict[str, Any]]]:
    return {v: await okx.get(v) for v in VIEWS}


async def trade(sim: SimHandle, okx: Okx) -> str:
    """A moved market, leverage 5, a long of 2.5 in three partial fills, a resting limit buy;
    returns the resting order's ordId."""
    sim.set_price(BTC, "61234.5")  # a shift of the seeded walk: must survive the restart
    lever = await okx.call("POST", "/api/v5/account/set-leverage",
                           {"instId": BTC, "lever": "5", "mgnMode": "cross"})
    assert lever["code"] == "0", lever
    bought = await okx.order(side="buy", sz="2.5")
    assert bought["code"] == "0", bought
    below = (sim.exchange.last[BTC] * D("0.9")).quantize(D("0.1"))
    rest = await okx.order(side="buy", sz="1", ordType="limit", px=str(below))
    assert rest["code"] == "0", rest
    ord_id: str = rest["data"][0]["ordId"]
    return ord_id


async def test_restart_serves_the_same_exchange(path: Path) -> None:
    async with serving(config(path)) as (sim, okx):
        resting = await trade(sim, okx)
        before = await views(okx)
        saved_now = sim.now()
    fills = before["/api/v5/trade/fills-history?instType=SWAP"]
    assert [f["fillSz"] for f in fills] == ["0.5", "1", "1"]  # newest first: partial fills
    assert [o["ordId"] for o in before["/api/v5/trade/orders-pending"]] == [resting]
    assert [p["lever"] for p in before["/api/v5/account/positions"]] == ["5"]

    async with serving(config(path)) as (sim, okx):
        assert sim.now() > saved_now  # time never goes back across a restart
        assert await views(okx) == before  # every ts in these is a record's own: unchanged
        sim.set_price(BTC, str(D(before["/api/v5/trade/orders-pending"][0]["px"]) - 1))
        assert await okx.get("/api/v5/trade/orders-pending") == []  # the resting order filled
        closed = await okx.order(side="sell", sz="3.5", reduceOnly="true")
        assert closed["code"] == "0", closed  # not 51148: the new sim knows the long
        assert await okx.get("/api/v5/account/positions") == []
        after = await okx.get("/api/v5/trade/fills-history?instType=SWAP")
        new = after[: len(after) - len(fills)]
    for field in ("ordId", "tradeId", "billId"):
        assert min(int(f[field]) for f in new) > max(int(f[field]) for f in fills), field


async def test_timestamps_move_forward_and_funding_missed_while_down_is_settled(
        path: Path) -> None:
    async with serving(config(path)) as (sim, okx):
        assert (await okx.order(side="buy", sz="1"))["code"] == "0"
        sim.advance(60)
        saved_now = sim.now()
    async with serving(config(path)) as (sim, okx):  # configured start is before saved_now
        assert sim.now() == saved_now + 1
    nine_hours_later = config(path, start_ms=START_MS + 9 * 3600 * 1000)
    async with serving(nine_hours_later) as (sim, okx):
        sim.tick()
        funding = await okx.get("/api/v5/account/bills?type=8")
        assert len(funding) == 1 and funding[0]["ts"] == str(sim.now())


async def test_a_change_reaches_the_file_within_the_save_delay(path: Path) -> None:
    async with serving(config(path)) as (_, okx):
        placed = await okx.order(side="buy", sz="1")
        ord_id = placed["data"][0]["ordId"]
        async with asyncio.timeout(5):  # saved while running, not only at shutdown
            while not (orders := doc(path)["accounts"][0]["orders"]):  # noqa: ASYNC110 - a file
                await asyncio.sleep(0.05)  # has no event to wait on: poll, bounded
        assert [(o["ord_id"], o["state"]) for o in orders] == [(ord_id, "filled")]


async def test_file_holds_no_secret_and_is_private(path: Path) -> None:
    async with serving(config(path, accounts=(AccountSpec(KEY, SECRET, PASSPHRASE), OTHER))):
        pass
    text = json.dumps(doc(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for secret in (SECRET, PASSPHRASE, OTHER.secret, OTHER.passphrase):
        assert secret not in text
    assert {a["api_key"] for a in doc(path)["accounts"]} == {KEY, OTHER.api_key}
    assert not list(path.parent.glob(".*.tmp"))  # no temp file left behind


async def test_unconfigured_account_is_kept_and_new_one_starts_fresh(path: Path) -> None:
    both = config(path, accounts=(AccountSpec(KEY, SECRET, PASSPHRASE), OTHER))
    async with serving(both, OTHER) as (_, other):
        assert (await other.order(side="buy", sz="1"))["code"] == "0"
    async with serving(config(path), OTHER) as (_, other):  # OTHER not configured
        assert (await other.call("GET", "/api/v5/account/balance"))["code"] == "50111"
    async with serving(both, OTHER) as (_, other):  # served again, its long intact
        (pos,) = await other.get("/api/v5/account/positions")
        assert pos["pos"] == "1"
    fresh = AccountSpec("new-key", "new-secret", "New-Pass1", D("777"))
    async with serving(config(path, accounts=(fresh,)), fresh) as (_, new):
        (bal,) = await new.get("/api/v5/account/balance")
        assert bal["details"][0]["cashBal"] == "777"
        uids = {a["uid"] for a in doc(path)["accounts"]}
        assert len(uids) == 3  # the new account does not reuse a sleeping account's uid


@pytest.mark.parametrize(("how", "problem"), [
    pytest.param(lambda t: t[: len(t) // 2], "not valid JSON", id="truncated"),
    pytest.param(lambda t: "", "empty", id="empty"),
    pytest.param(lambda t: t.replace('"version":2', '"version":99'), "version 99 is not "
                 "supported", id="unknown-version"),
    pytest.param(lambda t: t.replace('"cash":"', '"cash":1.5,"x":"'), "accounts[0].cash",
                 id="float-cash"),
    pytest.param(lambda t: t.replace('"fill_sz":"', '"fill_sz":"x', 1),
                 "accounts[0].fills[0].fill_sz", id="bad-decimal"),
    pytest.param(lambda t: t.replace('"ids":{"ord":', '"ids":{"ord":1,"x":'),
                 "ids.ord 1 is not above", id="ids-behind"),
    pytest.param(lambda t: "[]", "no \"version\" field", id="not-a-state-file"),
])
async def test_unusable_file_is_a_one_line_error(path: Path, how: Callable[[str], str],
                                                 problem: str) -> None:
    async with serving(config(path)) as (_, okx):
        assert (await okx.order(side="buy", sz="1"))["code"] == "0"
    damage(path, how)
    with pytest.raises(StateError) as caught:
        async with run_sim(config(path)):
            pass
    message = str(caught.value)
    assert message.startswith(f"state file {path}: ") and "\n" not in message
    assert problem in message, message


async def test_other_seed_is_refused_and_a_failed_start_releases_the_file(path: Path) -> None:
    async with serving(config(path)):
        pass
    with pytest.raises(StateError, match="written with seed 42, not 7") as caught:
        async with run_sim(config(path, seed=7)):
            pass
    async with serving(config(path)):  # caught's traceback keeps the failed start's frames
        assert caught.value  # alive: only an explicit release lets this start


async def test_a_held_instrument_must_stay_listed(path: Path) -> None:
    async with serving(config(path)) as (_, okx):
        assert (await okx.order(side="buy", sz="1"))["code"] == "0"
    eth_only = base_config(None, symbols=("ETH-USDT-SWAP",), state_file=str(path))
    with pytest.raises(StateError, match=f"account {KEY} holds positions or open orders in "
                                         f"{BTC}, which is not listed"):
        async with run_sim(eth_only):
            pass


async def test_two_sims_cannot_share_a_state_file(path: Path) -> None:
    async with serving(config(path)):
        with pytest.raises(StateError, match=r"in use by another okx-sim \(it holds .*\.lock\)"):
            async with run_sim(config(path)):
                pass


def test_cli_reports_a_corrupt_state_file_in_one_line(path: Path) -> None:
    path.write_text('{"version": 1, "accounts": ')
    result = subprocess.run(
        [sys.executable, "-c", "from aitrader.cli import main; main()", "okx-sim", "--port", "0",
         "--state-file", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: state file {path}: not valid JSON, truncated or corrupt "
        "(Expecting value: line 1 column 28 (char 27))"]


def test_sigterm_writes_the_last_change_before_the_sim_exits(path: Path) -> None:
    """`aitrader up` and containers stop the sim with SIGTERM: the change made just before
    (here: the clock moved by a control, its save still pending) is in the file after."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from aitrader.cli import main; main()", "okx-sim", "--port", "0",
         "--speed", "0", "--test-controls", "--state-file", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("okx-sim listening: REST "), first
        rest = first.split("REST ", 1)[1].strip()
        before = json.loads(path.read_text())["saved_at_ms"]
        reply = httpx.post(f"{rest}/sim/control/advance", json={"seconds": 3600}, timeout=5)
        assert reply.status_code == 200, reply.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads(path.read_text())["saved_at_ms"] >= before + 3_600_000


async def test_unwritable_place_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "okx-sim.json"
    with pytest.raises(StateError, match=r"^state file .*: cannot create .*\.lock \(No such"):
        async with run_sim(config(missing)):
            pass


async def test_close_writes_what_the_pending_save_would_have(tmp_path: Path) -> None:
    target = tmp_path / "saver.json"
    state = {"n": 0}
    saver = Saver(target, lambda: json.dumps(state), lock(target), delay=3600)
    saver.changed()  # first save due in an hour
    state["n"] = 1
    await saver.close()  # a clean stop does not wait for it, and loses nothing
    assert doc(target) == {"n": 1}
