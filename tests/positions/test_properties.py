"""Properties. Through the real service: any interleaving, duplication and reordering of a
ledger leaves the rows of the in-order fold. On the pure fold: folding in pieces equals folding
at once, and fees are conserved exactly across flips."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from uuid import UUID, uuid4

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from services.positions.config import PositionsSettings
from services.positions.domain import Entry, FundingEntry, LedgerFill, fold
from services.positions.rows import closed_from_row, position_from_row
from shared.messages import Event, Fill, FundingPayment
from shared.subjects import Subjects
from tests.factories import create_account, instrument_spec
from tests.positions.conftest import at, consumed, fill, funding

INSTRUMENTS = {s: instrument_spec(s) for s in ("BTC-USDT-SWAP", "ETH-USDT-SWAP")}  # ctVal 0.01, 0.1
SIZES = ["0.5", "1", "2", "3"]
PRICES = ["99.25", "100", "101.5"]
FEES = ["0", "-0.01", "0.003", "-0.00333333"]


@dataclass(frozen=True)
class Draft:
    """One ledger entry, before it has an account."""

    kind: str  # fill / funding
    symbol: str
    pos_side: str
    side: str
    size: str
    price: str
    fee: str
    minute: int

    def event(self, account: UUID, index: int) -> Event:
        if self.kind == "funding":
            return funding(account, f"b{index}", self.fee, self.minute, inst=self.symbol,
                           pos_side=self.pos_side)
        return fill(account, str(index), self.side, self.size, self.price, self.minute,
                    fee=self.fee, inst=self.symbol, pos_side=self.pos_side)


drafts = st.builds(
    Draft, kind=st.sampled_from(["fill"] * 5 + ["funding"]),
    symbol=st.sampled_from(sorted(INSTRUMENTS)), pos_side=st.sampled_from(["net", "net", "long", "short"]),
    side=st.sampled_from(["buy", "sell"]), size=st.sampled_from(SIZES), price=st.sampled_from(PRICES),
    fee=st.sampled_from(FEES), minute=st.integers(0, 4),  # few minutes: many equal times
)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[Draft], list[list[int]]]:
    """A ledger, and the waves it arrives in: shuffled, with duplicates."""
    ledger = draw(st.lists(drafts, min_size=1, max_size=14))
    order = draw(st.permutations(range(len(ledger))))
    repeats = draw(st.lists(st.sampled_from(range(len(ledger))), max_size=4))
    arrival = list(order) + repeats
    cuts = sorted(draw(st.lists(st.integers(0, len(arrival)), max_size=2)))
    waves = [arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True)]
    return ledger, [w for w in waves if w]


def entry(event: Event) -> Entry:
    if isinstance(event, FundingPayment):
        return FundingEntry(event.bill_id, event.ts_event.astimezone(UTC), event.pos_side, event.amount)
    assert isinstance(event, Fill)
    return LedgerFill(event.trade_id, event.ts_event.astimezone(UTC), event.side, event.pos_side,
                      event.fill_px, event.fill_sz, event.fill_fee)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(delivery=deliveries())
async def test_any_arrival_order_gives_the_in_order_fold(
    service: PositionsSettings, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool,
    delivery: tuple[list[Draft], list[list[int]]],
) -> None:
    ledger, waves = delivery
    account = await create_account(db_pool, f"prop-{uuid4().hex[:12]}")
    events = [draft.event(account, i) for i, draft in enumerate(ledger)]
    for wave in waves:
        # Plain publishes (no Nats-Msg-Id): duplicates reach the service, not just the stream.
        for i in wave:
            await js.publish(subjects.for_event(events[i]), events[i].to_bytes())
        await consumed(js, subjects)

    by_slot: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for event in events:
        by_slot[(event.inst_id, event.pos_side)].append(entry(event))  # type: ignore[attr-defined]
    expected_open, expected_closed = {}, []
    for (symbol, pos_side), entries in by_slot.items():
        result = fold(entries, INSTRUMENTS[symbol])
        if result.position is not None:
            expected_open[(symbol, pos_side)] = result.position
        expected_closed += [(symbol, c) for c in result.closed]

    open_rows = await db_pool.fetch("SELECT * FROM aitrader.positions_open WHERE account_id = $1",
                                    account)
    closed_rows = await db_pool.fetch("SELECT * FROM aitrader.positions_closed WHERE account_id = $1",
                                      account)
    assert {(r["symbol"], r["pos_side"]): position_from_row(r) for r in open_rows} == expected_open
    key = lambda pair: (pair[0], pair[1].pos_side, pair[1].closing_trade_id)  # noqa: E731
    assert sorted(((r["symbol"], closed_from_row(r)) for r in closed_rows), key=key) == sorted(
        expected_closed, key=key)


ledger_fills = st.lists(
    st.builds(lambda i, side, size, price, fee, minute: LedgerFill(
        f"{i:04d}", at(minute), side, "net",
        Decimal(price), Decimal(size), Decimal(fee)),
        st.integers(0, 9999), st.sampled_from(["buy", "sell"]), st.sampled_from(SIZES),
        st.sampled_from(PRICES), st.sampled_from(FEES), st.integers(0, 1000)),
    min_size=1, max_size=30, unique_by=lambda f: f.trade_id,
)


@given(fills=ledger_fills, cut=st.integers(0, 30))
def test_folding_in_two_pieces_equals_folding_at_once(fills: list[LedgerFill], cut: int) -> None:
    ordered = sorted(fills, key=lambda f: f.key)
    whole = fold(ordered, INSTRUMENTS["ETH-USDT-SWAP"])
    first = fold(ordered[:cut], INSTRUMENTS["ETH-USDT-SWAP"])
    second = fold(ordered[cut:], INSTRUMENTS["ETH-USDT-SWAP"], first.position)
    assert second.position == whole.position
    assert first.closed + second.closed == whole.closed


@given(fills=ledger_fills)
def test_fees_are_conserved_exactly_and_the_net_quantity_is_the_signed_sum(fills: list[LedgerFill]) -> None:
    result = fold(fills, INSTRUMENTS["BTC-USDT-SWAP"])
    open_fees = result.position.fees_usdt if result.position else Decimal(0)
    assert sum((c.fee_usdt for c in result.closed), open_fees) == sum(f.fee for f in fills)
    signed = sum(f.size if f.side == "buy" else -f.size for f in fills)
    held = Decimal(0) if result.position is None else (
        result.position.quantity if result.position.side == "long" else -result.position.quantity)
    assert held == signed
