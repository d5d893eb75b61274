"""The event contract: wire format, deduplication ids, subjects, and the published AsyncAPI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest
from pydantic import ValidationError

from shared.contract import asyncapi_json
from shared.messages import (
    AlgoOrderUpdate,
    AmendAlgo,
    AttachedAlgo,
    Candle,
    Fill,
    PlaceAlgo,
    PlaceOrder,
)
from shared.subjects import Subjects

ACCOUNT = UUID("0b6f6f53-7c1e-4a57-9a8e-4e0e2d3f5a10")
T0 = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)


def a_fill(**changes: object) -> Fill:
    values: dict[str, object] = dict(
        account_id=ACCOUNT,
        mode="simulated",
        inst_id="BTC-USDT-SWAP",
        trade_id="123",
        ord_id="9",
        side="buy",
        pos_side="net",
        fill_px=Decimal("50000.1"),
        fill_sz=Decimal("0.01"),
        fill_fee=Decimal("-0.00250001"),
        ts_event=T0,
    )
    values.update(changes)
    return Fill(**values)  # type: ignore[arg-type]


def test_decimals_are_strings_on_the_wire_and_round_trip_exactly() -> None:
    fill = a_fill()
    wire = json.loads(fill.to_bytes())
    assert wire["fill_px"] == "50000.1" and wire["fill_fee"] == "-0.00250001"
    assert wire["account_id"] == str(ACCOUNT) and wire["mode"] == "simulated"
    assert {"event_id", "ts_event", "ts_init", "schema_version"} <= set(wire)
    again = Fill.model_validate_json(fill.to_bytes())
    assert again == fill and again.fill_fee == Decimal("-0.00250001")


def test_events_are_frozen_and_reject_unknown_fields() -> None:
    fill = a_fill()
    with pytest.raises(ValidationError):
        fill.fill_px = Decimal(1)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        Fill.model_validate({**json.loads(fill.to_bytes()), "surprise": 1})


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"fill_sz": Decimal(0)}, id="zero-size"),
        pytest.param({"fill_px": Decimal("-1")}, id="negative-price"),
        pytest.param({"ts_event": datetime(2026, 1, 1)}, id="naive-time"),
        pytest.param({"mode": "paper"}, id="unknown-mode"),
    ],
)
def test_invalid_events_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        a_fill(**bad)


def test_dedup_ids_come_from_the_natural_key() -> None:
    first, redelivered = a_fill(), a_fill(ts_init=datetime(2027, 1, 1, tzinfo=UTC))
    assert first.event_id != redelivered.event_id
    assert first.msg_id() == redelivered.msg_id() == f"fill:{ACCOUNT}:BTC-USDT-SWAP:123"
    candle = Candle(
        inst_id="ETH-USDT-SWAP",
        bar="3m",
        open_time=T0,
        open=Decimal(1),
        high=Decimal(2),
        low=Decimal(1),
        close=Decimal(2),
        volume=Decimal(5),
        confirmed=True,
        ts_event=T0,
    )
    assert candle.msg_id() == "candle:ETH-USDT-SWAP:3m:1795240800000:1"


def test_place_order_client_id_is_the_order_id_without_dashes() -> None:
    command = PlaceOrder(
        order_id=ACCOUNT,
        account_id=ACCOUNT,
        inst_id="BTC-USDT-SWAP",
        side="buy",
        sz=Decimal("0.01"),
        lever=Decimal(5),
    )
    assert command.cl_ord_id == "0b6f6f537c1e4a579a8e4e0e2d3f5a10" and len(command.cl_ord_id) == 32


def test_subjects_and_streams_follow_design_section_4() -> None:
    s = Subjects()
    assert s.candle("4H", "BTC-USDT-SWAP") == "aitrader.market.candle.4H.BTC-USDT-SWAP"
    assert s.fill(ACCOUNT, "BTC-USDT-SWAP") == f"aitrader.account.{ACCOUNT}.fill.BTC-USDT-SWAP"
    assert s.position(ACCOUNT, "ETH-USDT-SWAP") == f"aitrader.positions.{ACCOUNT}.ETH-USDT-SWAP"
    assert s.place_order(ACCOUNT) == f"aitrader.cmd.{ACCOUNT}.place_order"
    assert s.stream_subjects() == {
        "MARKET": ["aitrader.market.>"],
        "ACCOUNT": ["aitrader.account.>"],
        "POSITIONS": ["aitrader.positions.>"],
        "RECONCILE": ["aitrader.reconcile.>"],
    }
    isolated = Subjects(root="t1", stream_prefix="T1_")
    assert isolated.stream("ACCOUNT") == "T1_ACCOUNT" and isolated.balance("a") == "t1.account.a.balance"


def test_the_committed_asyncapi_document_matches_the_code() -> None:
    committed = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
    assert committed.read_text() == asyncapi_json(), (
        "docs/asyncapi.json is stale: run `python -m shared.contract > docs/asyncapi.json`"
    )


def an_algo(**overrides: object) -> AlgoOrderUpdate:
    values: dict[str, object] = {
        "account_id": ACCOUNT, "mode": "simulated", "inst_id": "BTC-USDT-SWAP", "algo_id": "61",
        "ord_type": "conditional", "side": "sell", "pos_side": "net", "state": "live",
        "sz": Decimal(0), "close_fraction": Decimal(1), "reduce_only": True,
        "sl_trigger_px": Decimal("49000"), "sl_trigger_px_type": "mark", "sl_ord_px": "market",
        "ts_event": T0,
    }
    return AlgoOrderUpdate(**(values | overrides))  # type: ignore[arg-type]


def test_an_algo_update_keys_on_algo_id_time_and_state_and_says_market_in_words() -> None:
    live = an_algo()
    assert live.msg_id() == f"algo:{ACCOUNT}:61:1795240800000:live"
    assert an_algo(state="effective").msg_id() != live.msg_id()
    amended = an_algo(req_id="7eac3ad79cc543f49a5602e067cc20e0")  # the same uTime (a frozen clock)
    assert amended.msg_id() == f"{live.msg_id()}:7eac3ad79cc543f49a5602e067cc20e0"
    wire = json.loads(live.to_bytes())
    assert wire["sl_ord_px"] == "market" and wire["sl_trigger_px"] == "49000"
    limit = an_algo(sl_ord_px=Decimal("48900.5"))
    assert AlgoOrderUpdate.model_validate_json(limit.to_bytes()).sl_ord_px == Decimal("48900.5")


@pytest.mark.parametrize("bad", [
    pytest.param({"state": "triggered"}, id="unknown-state"),
    pytest.param({"ord_type": "trigger"}, id="unknown-type"),
    pytest.param({"sl_ord_px": Decimal(-1)}, id="minus-one-is-not-a-price"),
    pytest.param({"algo_id": "9" * 65}, id="long-id"),
    pytest.param({"fail_code": "x" * 33}, id="long-code"),
])
def test_invalid_algo_updates_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        an_algo(**bad)


def test_algo_commands_check_their_legs_and_size() -> None:
    base: dict[str, object] = {"request_id": ACCOUNT, "account_id": ACCOUNT,
                               "inst_id": "BTC-USDT-SWAP", "side": "sell"}
    ok = PlaceAlgo(**base, sz=Decimal(1), sl_trigger_px=Decimal(49000))  # type: ignore[arg-type]
    assert ok.algo_cl_ord_id == ACCOUNT.hex and ok.sl_ord_px == "market"
    for wrong in ({"sz": Decimal(1)}, {"sl_trigger_px": Decimal(1)},
                  {"sz": Decimal(1), "close_fraction": 1, "sl_trigger_px": Decimal(1)},
                  {"ord_type": "oco", "sz": Decimal(1), "sl_trigger_px": Decimal(1)}):
        with pytest.raises(ValidationError):
            PlaceAlgo(**base, **wrong)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cancel_sl"):
        AmendAlgo(request_id=ACCOUNT, account_id=ACCOUNT, inst_id="BTC-USDT-SWAP", algo_id="1",
                  cancel_sl=True, new_sl_trigger_px=Decimal(1))
    with pytest.raises(ValidationError, match="take-profit or a stop-loss"):
        AttachedAlgo()
