"""The subject table: every route builds and parses back to itself, and nothing else parses."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest

from services.positions.inbound import parse as parse_inbound
from shared.errors import PermanentError
from shared.messages import (
    AccountEvent,
    AlgoOrderUpdate,
    Balance,
    Event,
    ExchangePosition,
    Fill,
    FundingPayment,
    OrderUpdate,
    PlaceOrder,
)
from shared.subjects import (
    ROUTE,
    ROUTES,
    STREAM_ACCOUNT,
    STREAM_MARKET,
    STREAMS,
    Route,
    SubjectError,
    Subjects,
    _overlap,
    models_of,
)
from shared.wire import LeanFill

ACCOUNT = UUID("0b6f6f53-7c1e-4a57-9a8e-4e0e2d3f5a10")
T0 = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
SAMPLE = {"account_id": str(ACCOUNT), "inst_id": "BTC-USDT-SWAP", "bar": "4H", "service": "metrics"}
NAMESPACES = [Subjects(), Subjects("t1a2b", "T1A2B_"), Subjects("prod.eu")]


def tokens_of(route: Route) -> dict[str, str]:
    return {t: SAMPLE[t] for t in route.tokens}


@pytest.mark.parametrize("subjects", NAMESPACES, ids=lambda s: s.root)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.kind)
def test_every_route_round_trips(subjects: Subjects, route: Route) -> None:
    subject = subjects.build(route.kind, **tokens_of(route))
    assert subject.startswith(f"{subjects.root}.") and "{" not in subject
    parsed = subjects.parse(subject)
    assert parsed.route is route and dict(parsed.tokens) == tokens_of(route)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.kind)
def test_every_route_has_a_named_builder_taking_its_tokens_in_order(route: Route) -> None:
    subjects = Subjects("t1")
    builder = getattr(subjects, route.kind)
    assert tuple(inspect.signature(builder).parameters) == route.tokens
    assert builder(*tokens_of(route).values()) == subjects.build(route.kind, **tokens_of(route))


def test_the_table_documents_design_section_4() -> None:
    s = Subjects()
    assert [s.pattern(r.kind) for r in ROUTES if r.stream is None] == [
        "aitrader.cmd.{account_id}.place_order",
        "aitrader.cmd.{account_id}.place_algo",
        "aitrader.cmd.{account_id}.amend_algo",
        "aitrader.cmd.{account_id}.cancel_algo",
        "aitrader.cmd.market.refresh",
        "aitrader.dlq.{service}",
        "aitrader.svc.positions.instances",
    ]
    assert STREAMS == ("MARKET", "ACCOUNT", "POSITIONS", "RECONCILE")
    assert s.discrepancy(ACCOUNT) == f"aitrader.reconcile.{ACCOUNT}"
    assert s.filter("candle") == "aitrader.market.candle.*.*"
    assert s.filter("fill", account_id=ACCOUNT) == f"aitrader.account.{ACCOUNT}.fill.*"
    assert s.everything == "aitrader.>" and s.positions_all == "aitrader.positions.>"
    assert s.dead_letter("metrics") == "aitrader.dlq.metrics"


def test_the_account_stream_is_stored_with_a_partition_token_after_account() -> None:
    s = Subjects("t1")
    assert s.partition_transform(STREAM_ACCOUNT, 8) == (
        "t1.account.*.>", "t1.account.{{partition(8,1)}}.{{wildcard(1)}}.>")
    assert s.partition_transform(STREAM_MARKET, 8) is None
    assert s.partition_filter(STREAM_ACCOUNT, 3) == "t1.account.3.>"
    fill = s.fill(ACCOUNT, "BTC-USDT-SWAP")
    stored = f"t1.account.5.{ACCOUNT}.fill.BTC-USDT-SWAP"
    assert s.published(stored) == fill
    assert s.stored_filter(fill) == f"t1.account.*.{ACCOUNT}.fill.BTC-USDT-SWAP"
    with pytest.raises(SubjectError, match="no partition token"):
        s.published(fill)  # the published form has none
    with pytest.raises(SubjectError, match="not on a partitioned stream"):
        s.published(s.ticker("BTC-USDT-SWAP"))
    with pytest.raises(ValueError, match="no partition"):
        s.partition_filter(STREAM_MARKET, 0)


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("other.market.ticker.BTC-USDT-SWAP", id="wrong-root"),
        pytest.param("aitraderx.market.ticker.BTC-USDT-SWAP", id="root-is-a-prefix-only"),
        pytest.param("aitrader", id="root-alone"),
        pytest.param("aitrader.market.ticker", id="too-few-tokens"),
        pytest.param("aitrader.market.ticker.BTC-USDT-SWAP.x", id="too-many-tokens"),
        pytest.param(f"aitrader.account.{ACCOUNT}.balance.BTC-USDT-SWAP", id="balance-with-instrument"),
        pytest.param(f"aitrader.account.{ACCOUNT}.fill", id="fill-without-instrument"),
        pytest.param(f"aitrader.account.{ACCOUNT}.trade.BTC-USDT-SWAP", id="unknown-kind"),
        pytest.param("aitrader.ledger.x", id="unknown-first-token"),
        pytest.param(f"aitrader.account.{ACCOUNT}.fill.BTC.USDT", id="token-with-a-dot"),
        pytest.param(f"aitrader.account.{ACCOUNT}.fill.*", id="wildcard-star"),
        pytest.param("aitrader.account.>.fill.BTC-USDT-SWAP", id="wildcard-gt"),
        pytest.param("aitrader.positions.*.*", id="filter-not-a-subject"),
        pytest.param("aitrader.account..fill.BTC-USDT-SWAP", id="empty-token"),
        pytest.param("aitrader.cmd.market.place_order.x", id="command-too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_a_subject_matching_no_route_is_refused(subject: str) -> None:
    with pytest.raises(SubjectError, match=r"root|no route|token"):
        Subjects().parse(subject)


def test_a_refused_subject_is_a_permanent_error() -> None:
    assert issubclass(SubjectError, PermanentError)


def test_build_refuses_missing_or_unknown_tokens() -> None:
    with pytest.raises(TypeError, match="takes the tokens"):
        Subjects().build("fill", account_id=ACCOUNT)
    with pytest.raises(TypeError, match="takes the tokens"):
        Subjects().filter("balance", inst_id="BTC-USDT-SWAP")


def test_overlapping_routes_are_detected() -> None:
    place = ROUTE["place_order"]
    clash = Route("refresh_all", None, None, "cmd.{scope}.place_order", "")
    assert _overlap(place, clash) and not _overlap(place, ROUTE["market_data_refresh"])
    with pytest.raises(ValueError, match="first token"):
        Route("bad", None, None, "{account_id}.x", "")
    with pytest.raises(ValueError, match="bad token"):
        Route("bad", None, None, "market.*", "")


def test_the_kind_to_model_map_is_read_from_the_table() -> None:
    assert models_of(STREAM_ACCOUNT, AccountEvent) == {
        "order": OrderUpdate,
        "fill": Fill,
        "balance": Balance,
        "exchange_position": ExchangePosition,
        "funding_payment": FundingPayment,
        "algo_order": AlgoOrderUpdate,
    }
    assert set(models_of(STREAM_MARKET, Event)) == {
        "candle", "ticker", "mark_price", "funding_rate", "open_interest",
    }
    with pytest.raises(TypeError, match="is not a AccountEvent"):
        models_of(STREAM_MARKET, AccountEvent)


ACCOUNT_EVENTS = [
    Fill(account_id=ACCOUNT, mode="simulated", inst_id="BTC-USDT-SWAP", trade_id="1", ord_id="9",
         side="buy", pos_side="net", fill_px=Decimal("50000.1"), fill_sz=Decimal("0.01"),
         fill_fee=Decimal("-0.01"), ts_event=T0),
    OrderUpdate(account_id=ACCOUNT, mode="simulated", inst_id="ETH-USDT-SWAP", ord_id="9",
                side="sell", pos_side="net", ord_type="market", state="live", sz=Decimal(1),
                ts_event=T0),
    Balance(account_id=ACCOUNT, mode="simulated", cash_bal=Decimal(100), avail_bal=Decimal(90),
            ts_event=T0),
    ExchangePosition(account_id=ACCOUNT, mode="simulated", inst_id="BTC-USDT-SWAP",
                     pos_side="net", pos=Decimal("-2"), ts_event=T0),
    FundingPayment(account_id=ACCOUNT, mode="simulated", inst_id="BTC-USDT-SWAP", bill_id="7",
                   amount=Decimal("0.5"), ts_event=T0),
    AlgoOrderUpdate(account_id=ACCOUNT, mode="simulated", inst_id="BTC-USDT-SWAP", algo_id="6",
                    ord_type="oco", side="sell", pos_side="net", state="live", sz=Decimal(1),
                    tp_trigger_px=Decimal(52000), tp_trigger_px_type="last", tp_ord_px="market",
                    sl_trigger_px=Decimal(49000), sl_trigger_px_type="mark",
                    sl_ord_px=Decimal(48900), ts_event=T0),
]


@pytest.mark.parametrize("event", ACCOUNT_EVENTS, ids=lambda e: type(e).__name__)
def test_what_ingest_publishes_positions_reads_back(event: AccountEvent) -> None:
    """Ingest's publisher names the subject from the event (`for_event`); the positions
    consumer parses it back to the same kind, account and instrument."""
    subjects = Subjects("t9", "T9_")
    subject = subjects.for_event(event)
    inbound = parse_inbound(0, subject, event.to_bytes(), subjects.root, lambda: T0)
    read = LeanFill.of(event) if isinstance(event, Fill) else event  # a fill is read lean (shared.wire)
    assert inbound.event == read and subjects.parse(subject).route.model is type(event)


def test_a_command_subject_comes_from_its_model() -> None:
    command = PlaceOrder(order_id=ACCOUNT, account_id=ACCOUNT, inst_id="BTC-USDT-SWAP",
                         side="buy", sz=Decimal(1), lever=Decimal(3))
    assert Subjects().for_event(command) == f"aitrader.cmd.{ACCOUNT}.place_order"
    with pytest.raises(TypeError, match="no subject for"):
        Subjects().for_event(Event(ts_event=T0))


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        pytest.param("t9.market.ticker.BTC-USDT-SWAP", "not an account subject", id="market-subject"),
        pytest.param("t9.account.x.fill.BTC.USDT", "no route matches", id="token-with-a-dot"),
        pytest.param("t1.account.x.fill.BTC-USDT-SWAP", "not under the root", id="other-root"),
    ],
)
def test_positions_refuses_a_subject_that_is_not_an_account_route(subject: str, reason: str) -> None:
    with pytest.raises(PermanentError, match=reason):
        parse_inbound(0, subject, ACCOUNT_EVENTS[0].to_bytes(), "t9", lambda: T0)
