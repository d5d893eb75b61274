"""Bad REST requests get OKX's error codes in OKX's envelope, never a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.okx_sim import SimHandle, run_sim
from services.okx_sim.auth import rest_prehash, sign

from .conftest import KEY, PASSPHRASE, SECRET, base_config

ORDER = b'{"instId":"BTC-USDT-SWAP","tdMode":"cross","side":"buy","ordType":"market","sz":"1"}'


def test_signature_vectors_from_the_reference() -> None:
    secret, ts = "22582BD0CFF14C41EDBF1AB98506286D", "2020-12-08T09:08:57.715Z"
    assert sign(secret, rest_prehash(ts, "GET", "/api/v5/account/balance?ccy=BTC", b"")) == (
        "HiZhvSfMtWJA3uUIVXV3a/bSXNPCWvYFXoGCVS8V4zY=")
    body = b'{"instId":"BTC-USDT","lever":"5","mgnMode":"isolated"}'
    assert sign(secret, rest_prehash(ts, "POST", "/api/v5/account/set-leverage", body)) == (
        "eCnnCgWLjlQ9XnpUkrcny3qNq3WW/81KNrDr/XR6Xv8=")
    assert sign(secret, b"1538054050GET/users/self/verify") == (
        "+LdIr8lkkvhr5hoA3g9TMC0+uQJ849ftAcocA/ouu4M=")


def iso(delta_s: float = 0) -> str:
    t = datetime.now(UTC) + timedelta(seconds=delta_s)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def headers(method: str, path: str, body: bytes = b"", *, secret: str = SECRET,
            key: str = KEY, passphrase: str = PASSPHRASE, ts: str | None = None
            ) -> dict[str, str]:
    ts = ts or iso()
    return {"OK-ACCESS-KEY": key, "OK-ACCESS-SIGN": sign(secret, rest_prehash(ts, method, path,
                                                                              body)),
            "OK-ACCESS-TIMESTAMP": ts, "OK-ACCESS-PASSPHRASE": passphrase,
            "Content-Type": "application/json", "x-simulated-trading": "1"}


@pytest.fixture
async def plain() -> AsyncIterator[tuple[SimHandle, httpx.AsyncClient]]:
    async with run_sim(base_config()) as sim, httpx.AsyncClient(base_url=sim.rest_url) as c:
        yield sim, c


async def post(client: httpx.AsyncClient, path: str, body: bytes, **kw: str) -> httpx.Response:
    return await client.post(path, content=body, headers=headers("POST", path, body, **kw))


@pytest.mark.parametrize(("kw", "code"), [
    pytest.param({"secret": "wrong"}, "50113", id="bad-signature"),
    pytest.param({"key": "unknown"}, "50111", id="unknown-key"),
    pytest.param({"passphrase": "wrong"}, "50105", id="wrong-passphrase"),
    pytest.param({"ts": iso(-31)}, "50102", id="expired-timestamp"),
    pytest.param({"ts": "yesterday"}, "50112", id="malformed-timestamp"),
])
async def test_auth_errors(plain: tuple[SimHandle, httpx.AsyncClient], kw: dict[str, str],
                           code: str) -> None:
    _, client = plain
    resp = await post(client, "/api/v5/trade/order", ORDER, **kw)
    assert resp.status_code == 401
    assert resp.json() == {"msg": resp.json()["msg"], "code": code}


async def test_signature_covers_the_raw_body_and_query(
        plain: tuple[SimHandle, httpx.AsyncClient]) -> None:
    _, client = plain
    spaced = ORDER.replace(b":", b": ")  # python-okx style; must verify over these bytes
    assert (await post(client, "/api/v5/trade/order", spaced)).json()["code"] == "0"
    signed_for_other_body = headers("POST", "/api/v5/trade/order", ORDER)
    tampered = await client.post("/api/v5/trade/order", content=spaced,
                                 headers=signed_for_other_body)
    assert tampered.json()["code"] == "50113"
    path = "/api/v5/account/balance?ccy=USDT"
    ok = await client.get(path, headers=headers("GET", path))
    assert ok.json()["code"] == "0"
    wrong_query = await client.get(path, headers=headers("GET", "/api/v5/account/balance"))
    assert wrong_query.json()["code"] == "50113"
    missing = await client.get(path)
    assert (missing.status_code, missing.json()["code"]) == (401, "50103")


@pytest.mark.parametrize(("body", "code", "s_code"), [
    pytest.param(b'{"instId": "BTC-USDT-SWAP", "tdMode"', "50002", None, id="malformed-json"),
    pytest.param(b'["not", "an", "object"]', "50002", None, id="json-not-an-object"),
    pytest.param(b'{"tdMode":"cross","side":"buy","ordType":"market","sz":"1"}', "50014", None,
                 id="missing-instId"),
    pytest.param(ORDER.replace(b'"sz":"1"', b'"sz":"abc"'), "51000", None, id="bad-sz"),
    pytest.param(ORDER.replace(b'"side":"buy"', b'"side":"up"'), "51000", None, id="bad-side"),
    pytest.param(ORDER.replace(b"BTC-USDT-SWAP", b"DOGE-USD-SWAP"), "1", "51001",
                 id="unknown-instrument"),
    pytest.param(ORDER.replace(b'"sz":"1"', b'"sz":"1.005"'), "1", "51121",
                 id="not-a-lot-multiple"),
    pytest.param(ORDER.replace(b'"sz":"1"', b'"sz":"5000"'), "1", "51008",
                 id="insufficient-margin"),
    pytest.param(ORDER.replace(b'"market"', b'"limit"'), "1", "51000", id="limit-without-px"),
])
async def test_order_errors(plain: tuple[SimHandle, httpx.AsyncClient], body: bytes,
                            code: str, s_code: str | None) -> None:
    sim, client = plain
    resp = await post(client, "/api/v5/trade/order", body)
    data = resp.json()
    assert data["code"] == code
    if s_code:
        assert resp.status_code == 200 and data["msg"] == "All operations failed"
        assert data["data"][0]["sCode"] == s_code and data["data"][0]["sMsg"]
    else:
        assert data["data"] == [] and data["msg"]
    assert not sim.exchange.accounts[KEY].fills


async def test_public_errors_and_unknown_paths(plain: tuple[SimHandle, httpx.AsyncClient]) -> None:
    _, client = plain
    unknown = await client.get("/api/v5/market/candles?instId=NOPE-USDT-SWAP")
    assert unknown.json()["code"] == "51001"
    bad_bar = await client.get("/api/v5/market/candles?instId=BTC-USDT-SWAP&bar=7m")
    assert bad_bar.json()["code"] == "51000"
    missing = await client.get("/api/v5/public/instruments")
    assert missing.json()["code"] == "50014"
    nowhere = await client.get("/api/v5/nowhere")
    assert nowhere.status_code == 404 and nowhere.json()["msg"] == "Not Found"
    controls = await client.post("/sim/control/advance", json={"seconds": 1})
    assert controls.json() == {"ok": True, "result": controls.json()["result"]}


async def test_controls_absent_unless_enabled() -> None:
    async with run_sim(base_config(test_controls=False)) as sim, \
            httpx.AsyncClient(base_url=sim.rest_url) as client:
        resp = await client.post("/sim/control/advance", json={"seconds": 1})
        assert resp.status_code == 404
