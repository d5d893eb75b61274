"""The pure core: OKX frames and REST rows -> events, and the reasons bad input is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest import normalize_account as acct
from services.ingest.normalize import (
    AccountRef,
    BadFrame,
    Push,
    WsEvent,
    normalize_push,
    parse_frame,
)
from shared.messages import AlgoOrderUpdate, Candle, Fill, OrderUpdate, Ticker
from tests.shared.cases import BAR_CASES

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACC = AccountRef(UUID(int=7), "simulated")
ORDER = {
    "instType": "SWAP", "instId": "BTC-USDT-SWAP", "ordId": "700000000000000001",
    "clOrdId": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "side": "sell", "posSide": "net",
    "ordType": "market", "px": "", "sz": "2", "state": "partially_filled", "accFillSz": "1",
    "avgPx": "63548.9", "lever": "10", "category": "normal", "reduceOnly": "false",
    "tradeId": "1000000009", "fillPx": "63548.9", "fillSz": "1", "fillFee": "-0.3177445",
    "fillFeeCcy": "USDT", "fillPnl": "12.5", "fillTime": "1767225600123", "execType": "T",
    "uTime": "1767225600124", "cTime": "1767225600000",
}
REST_FILL = {
    "instType": "SWAP", "instId": "BTC-USDT-SWAP", "tradeId": "1000000009",
    "ordId": "700000000000000001", "clOrdId": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "billId": "800000000000000001", "subType": "6", "fillPx": "63548.9", "fillSz": "1",
    "fillPnl": "12.5", "side": "sell", "posSide": "net", "execType": "T", "feeCcy": "USDT",
    "fee": "-0.3177445", "ts": "1767225600123", "fillTime": "1767225600123",
}


def push(channel: str, data: list[Any], **arg: str) -> Push:
    return Push(channel, {"channel": channel, **arg}, data)


def test_fill_from_orders_push_keeps_decimals_and_okx_signs() -> None:
    result = normalize_push(push("orders", [ORDER], instType="SWAP"), NOW, ACC)
    assert not result.errors
    fill, update = result.events
    assert isinstance(fill, Fill) and isinstance(update, OrderUpdate)
    assert (fill.fill_px, fill.fill_sz, fill.fill_fee) == (
        Decimal("63548.9"), Decimal("1"), Decimal("-0.3177445"))
    assert fill.fill_pnl == Decimal("12.5") and fill.lever == Decimal("10")
    assert fill.msg_id() == f"fill:{ACC.account_id}:BTC-USDT-SWAP:1000000009"
    assert fill.ts_event == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert fill.raw["tradeId"] == "1000000009"
    assert update.acc_fill_sz == 1 and update.state == "partially_filled"


def test_rest_fill_equals_the_live_fill_with_its_order() -> None:
    live = acct.fill_from_order(ORDER, ACC, NOW)
    rest = acct.fill_from_rest(REST_FILL, ACC, NOW, order=ORDER)
    keep = set(Fill.model_fields) - {"event_id", "raw"}
    assert live is not None
    assert live.model_dump(include=keep) == rest.model_dump(include=keep)


@pytest.mark.parametrize(("sub_type", "category"), [
    pytest.param("5", "normal", id="close-long"),
    pytest.param("101", "partial_liquidation", id="partial-liquidation"),
    pytest.param("105", "full_liquidation", id="full-liquidation"),
    pytest.param("126", "adl", id="adl"),
])
def test_rest_fill_category_from_bill_subtype(sub_type: str, category: str) -> None:
    assert acct.fill_from_rest(REST_FILL | {"subType": sub_type}, ACC, NOW).category == category


def test_order_push_without_trade_id_is_only_an_order_update() -> None:
    live = ORDER | {"tradeId": "", "fillSz": "0", "fillPx": "", "state": "live"}
    events = normalize_push(push("orders", [live]), NOW, ACC).events
    assert [type(e) for e in events] == [OrderUpdate]


def test_candles_confirmed_and_forming() -> None:
    rows = [["1767225600000", "100", "101", "99", "100.5", "12", "0.12", "12.06", "1"],
            ["1767225660000", "100.5", "100.7", "100.1", "100.2", "3", "0.03", "3.0", "0"]]
    events = normalize_push(push("candle1m", rows, instId="BTC-USDT-SWAP"), NOW, None).events
    assert [(c.bar, c.confirmed, c.close) for c in events if isinstance(c, Candle)] == [
        ("1m", True, Decimal("100.5")), ("1m", False, Decimal("100.2"))]


@pytest.mark.parametrize(("bar", "length", "closes"), BAR_CASES)
def test_a_candle_channel_names_its_bar(bar: str, length: int | None, closes: datetime | None) -> None:
    row = ["1767225600000", "100", "101", "99", "100.5", "12", "0.12", "12.06", "1"]
    out = normalize_push(push(f"candle{bar}", [row], instId="BTC-USDT-SWAP"), NOW, None)
    if closes is None:  # no bar (shared.bars): not a candle channel
        assert ([e.reason for e in out.errors], out.events) == (["unknown_channel"], [])
    else:
        assert [c.bar for c in out.events if isinstance(c, Candle)] == [bar]


def test_short_legacy_candle_row_is_read_as_forming() -> None:
    row = ["1767225600000", "100", "101", "99", "100.5", "12"]
    (candle,) = normalize_push(push("candle1H", [row], instId="ETH-USDT-SWAP"), NOW, None).events
    assert isinstance(candle, Candle) and not candle.confirmed and candle.volume_ccy is None


def test_ticker() -> None:
    data = [{"instId": "BTC-USDT-SWAP", "last": "9999.99", "bidPx": "9999.9", "askPx": "",
             "vol24h": "2222", "ts": "1597026383085"}]
    (ticker,) = normalize_push(push("tickers", data), NOW, None).events
    assert isinstance(ticker, Ticker) and ticker.ask_px is None and ticker.last == Decimal(
        "9999.99")


@pytest.mark.parametrize(("frame", "reason"), [
    pytest.param('{"arg":{"channel":"orders"},"data":[{"ordId":', "not_json", id="truncated"),
    pytest.param("[1,2]", "not_object", id="array"),
    pytest.param('{"arg":{"channel":"x"},"data":{"a":1}}', "data_not_list", id="data-object"),
    pytest.param('{"arg":"tickers","data":[]}', "bad_arg", id="arg-string"),
    pytest.param('{"event":17}', "bad_event", id="event-number"),
    pytest.param('{"arg":{"channel":"t"},"data":[NaN]}', "bad_number", id="nan"),
])
def test_bad_frames_are_refused_with_their_reason(frame: str, reason: str) -> None:
    with pytest.raises(BadFrame) as caught:
        parse_frame(frame)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("channel", "element", "reason"), [
    pytest.param("orders", ORDER | {"fillPx": "abc"}, "bad_field", id="price-not-a-number"),
    pytest.param("orders", ORDER | {"fillPx": "-1"}, "invalid_value", id="negative-price"),
    pytest.param("orders", ORDER | {"fillFee": ""}, "missing_field", id="fill-without-fee"),
    pytest.param("orders", ORDER | {"fillSz": "0"}, "fill_without_size", id="zero-fill"),
    pytest.param("orders", ORDER | {"fillSz": 1.5}, "bad_field", id="float-size"),
    pytest.param("orders", ORDER | {"side": "hold"}, "bad_field", id="unknown-side"),
    pytest.param("orders", ORDER | {"instId": "BTC.>"}, "bad_field", id="subject-injection"),
    pytest.param("orders", ORDER | {"fillTime": "-5"}, "bad_field", id="negative-time"),
    pytest.param("orders", ORDER | {"fillTime": "9" * 30}, "bad_field", id="far-future"),
    pytest.param("tickers", {"instId": "X-Y", "last": "1"}, "missing_field", id="ticker-no-ts"),
    pytest.param("mark-price", "BTC", "bad_element", id="element-not-object"),
    pytest.param("candle1m", ["1", "2"], "bad_candle_row", id="short-candle"),
    pytest.param("fills", {}, "unknown_channel", id="vip-fills-channel"),
    pytest.param("candle7x", [], "unknown_channel", id="unknown-bar"),
])
def test_bad_elements_are_collected_with_their_reason(channel: str, element: Any,
                                                      reason: str) -> None:
    result = normalize_push(push(channel, [element], instId="BTC-USDT-SWAP"), NOW, ACC)
    assert [e.reason for e in result.errors] == [reason]
    assert result.events == []


def test_account_push_without_account_is_refused() -> None:
    result = normalize_push(push("orders", [ORDER]), NOW, None)
    assert [e.reason for e in result.errors] == ["no_account"]


def test_good_elements_survive_a_bad_neighbour() -> None:
    result = normalize_push(push("orders", [ORDER | {"fillPx": "x"}, ORDER]), NOW, ACC)
    assert len(result.errors) == 1 and len(result.events) == 2


def test_events_and_funding_signal() -> None:
    login = parse_frame('{"event":"login","code":"0","msg":"","connId":"a"}')
    assert isinstance(login, WsEvent) and login.code == "0"
    bp = push("balance_and_position", [{"eventType": "funding_fee", "balData": []}])
    assert normalize_push(bp, NOW, ACC).funding_settled


@pytest.mark.parametrize(("row", "stored"), [
    pytest.param({"instId": "BTC-USDT-SWAP", "settleCcy": "USDT", "ctType": "linear",
                  "ctVal": "0.01", "ctMult": "1", "lotSz": "0.01", "minSz": "0.01",
                  "tickSz": "0.1", "lever": "100", "instFamily": "BTC-USDT", "state": "live"},
                 True, id="linear-usdt"),
    pytest.param({"instId": "BTC-USD-SWAP", "settleCcy": "BTC", "ctType": "inverse",
                  "ctVal": "100", "ctMult": "1", "lotSz": "1", "minSz": "1", "tickSz": "0.1",
                  "lever": "100"}, False, id="inverse-skipped"),
])
def test_instruments(row: dict[str, str], stored: bool) -> None:
    found = acct.instrument(row)
    assert (found is not None) == stored
    if found:
        assert (found.spec.base_asset, found.spec.ct_val, found.spec.max_leverage) == (
            "BTC", Decimal("0.01"), Decimal("100"))


# ---------------------------------------------------------------------------- fuzzing
VALID = json.dumps({"arg": {"channel": "orders", "instType": "SWAP"}, "data": [ORDER]})
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _mutated_order(data: st.DataObject) -> str:
    key = data.draw(st.sampled_from(sorted(ORDER)))
    element = ORDER | {key: data.draw(json_values)}
    channel = data.draw(st.sampled_from(["orders", "positions", "account", "tickers",
                                         "candle1m", "nope", "fills"]))
    return json.dumps({"arg": {"channel": channel, "instId": "BTC-USDT-SWAP"},
                       "data": [element]}, default=str)


frames = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.integers(1, len(VALID) - 1).map(lambda n: VALID[:n]),
    json_values.map(lambda v: json.dumps(v, default=str)),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_never_crashes_and_keeps_valid_neighbours(data: st.DataObject) -> None:
    junk = data.draw(st.one_of(frames, st.none())) or _mutated_order(data)
    outcomes: list[str | int] = []
    for raw in (VALID, junk, VALID):
        try:
            frame = parse_frame(raw)
        except BadFrame as err:
            assert err.reason
            outcomes.append("bad")
            continue
        if isinstance(frame, Push):
            result = normalize_push(frame, NOW, ACC)
            assert all(e.reason for e in result.errors)
            outcomes.append(len(result.events))
    assert outcomes[0] == outcomes[-1] == 2


# An orders-algo element as OKX documents it (docs/okx-algo-orders.md): an oco, SL by mark
# at market, TP by last at a limit price; most of the other fields empty.
ALGO = {
    "instType": "SWAP", "instId": "BTC-USDT-SWAP", "ordId": "", "ordIdList": [],
    "algoId": "600000000000000001", "clOrdId": "", "sz": "2", "closeFraction": "",
    "ordType": "oco", "side": "sell", "posSide": "net", "tdMode": "cross", "state": "live",
    "tpTriggerPx": "52000", "tpTriggerPxType": "last", "tpOrdPx": "51990.5",
    "slTriggerPx": "49000", "slTriggerPxType": "mark", "slOrdPx": "-1", "triggerPx": "",
    "ordPx": "", "actualSz": "0", "actualPx": "", "actualSide": "", "triggerTime": "",
    "reduceOnly": "true", "failCode": "", "algoClOrdId": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "reqId": "", "amendResult": "", "attachAlgoOrds": [], "linkedOrd": {"ordId": ""},
    "cTime": "1767225600000", "uTime": "1767225600500",
}


def test_an_orders_algo_push_is_an_algo_update_with_market_in_words() -> None:
    result = normalize_push(push("orders-algo", [ALGO], instType="SWAP"), NOW, ACC)
    assert not result.errors
    (update,) = result.events
    assert isinstance(update, AlgoOrderUpdate)
    assert (update.ord_type, update.state, update.side, update.sz, update.reduce_only) == (
        "oco", "live", "sell", Decimal(2), True)
    assert (update.tp_trigger_px, update.tp_trigger_px_type, update.tp_ord_px) == (
        Decimal("52000"), "last", Decimal("51990.5"))
    assert (update.sl_trigger_px, update.sl_trigger_px_type, update.sl_ord_px) == (
        Decimal("49000"), "mark", "market")
    assert update.actual_side is None and update.ord_id is None and update.fail_code is None
    assert update.algo_cl_ord_id == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert update.msg_id() == f"algo:{ACC.account_id}:600000000000000001:1767225600500:live"


def test_a_fired_close_position_stop_names_its_leg_and_order() -> None:
    fired = ALGO | {"ordType": "conditional", "sz": "0", "closeFraction": "1", "state": "effective",
                    "tpTriggerPx": "", "tpTriggerPxType": "", "tpOrdPx": "", "actualSide": "sl",
                    "actualSz": "2", "ordId": "700000000000000009"}
    update = acct.algo_order(fired, ACC, NOW)
    assert (update.state, update.actual_side, update.ord_id, update.close_fraction) == (
        "effective", "sl", "700000000000000009", Decimal(1))
    assert (update.tp_trigger_px, update.tp_ord_px, update.tp_trigger_px_type) == (None, None, None)
    failed = acct.algo_order(fired | {"state": "order_failed", "failCode": "51148"}, ACC, NOW)
    assert failed.fail_code == "51148"


def test_an_order_placed_by_an_algo_carries_its_id_and_empty_is_none() -> None:
    placed = ORDER | {"algoId": "600000000000000001", "source": "7"}
    fill, update = normalize_push(push("orders", [placed]), NOW, ACC).events
    assert isinstance(fill, Fill) and isinstance(update, OrderUpdate)
    assert fill.algo_id == update.algo_id == "600000000000000001"
    fill, update = normalize_push(push("orders", [ORDER | {"algoId": ""}]), NOW, ACC).events
    assert isinstance(fill, Fill) and isinstance(update, OrderUpdate)
    assert fill.algo_id is None and update.algo_id is None


@pytest.mark.parametrize(("element", "reason"), [
    pytest.param(ALGO | {"algoId": ""}, "missing_field", id="no-algo-id"),
    pytest.param(ALGO | {"uTime": ""}, "missing_field", id="no-update-time"),
    pytest.param(ALGO | {"state": "triggered"}, "bad_field", id="unknown-state"),
    pytest.param(ALGO | {"ordType": "move_order_stop"}, "bad_field", id="unsupported-type"),
    pytest.param(ALGO | {"slOrdPx": ""}, "missing_field", id="leg-without-order-price"),
    pytest.param(ALGO | {"slOrdPx": "-2"}, "invalid_value", id="negative-order-price"),
    pytest.param(ALGO | {"slTriggerPx": "1e999x"}, "bad_field", id="bad-trigger"),
    pytest.param(ALGO | {"slTriggerPxType": "median"}, "bad_field", id="unknown-trigger-type"),
    pytest.param(ALGO | {"actualSide": "both"}, "bad_field", id="unknown-leg"),
    pytest.param(ALGO | {"failCode": "5" * 40}, "invalid_value", id="long-fail-code"),
    pytest.param(ALGO | {"algoId": "6.>"}, "bad_field", id="subject-injection"),
])
def test_bad_algo_elements_are_collected_with_their_reason(element: Any, reason: str) -> None:
    result = normalize_push(push("orders-algo", [element, ALGO]), NOW, ACC)
    assert [e.reason for e in result.errors] == [reason]
    assert [type(e) for e in result.events] == [AlgoOrderUpdate]  # the good neighbour stays


def test_an_algo_push_without_account_is_refused() -> None:
    result = normalize_push(push("orders-algo", [ALGO]), NOW, None)
    assert [e.reason for e in result.errors] == ["no_account"]
