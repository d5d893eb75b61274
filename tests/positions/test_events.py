"""What one batch changed in a slot and which position events it publishes (events.py, pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal as D
from uuid import uuid4

import pytest

from services.positions.domain import Entry, EntryKey, Position, fold
from services.positions.events import (
    Slot,
    SlotChange,
    needs_refold,
    position_events,
    slot_of,
)
from services.positions.ids import uuid7
from shared.exchange_ids import id_key
from shared.messages import Fill, FundingPayment, PositionEvent
from tests.positions.test_domain import ETH, at, buy, funding, sell

SLOT = Slot(uuid4(), ETH.symbol, "net")


def batch_events(entries: Sequence[Entry], before: Position | None = None) -> list[tuple[str, str | None]]:
    result = fold(entries, ETH, before)
    change = SlotChange(SLOT, before, result).at(max(e.key for e in entries), "simulated")
    return [(e.kind, e.trade_id) for e in change.events()]


def test_a_position_opened_and_closed_within_one_batch_still_gets_its_opened_event() -> None:
    entries = [buy("1", "100", 0, trade_id="a"), sell("1", "110", 1, trade_id="b"),
               buy("2", "120", 2, trade_id="c"), buy("1", "121", 3, trade_id="d")]
    assert batch_events(entries) == [("opened", "a"), ("closed", "b"), ("opened", "d")]


def test_a_flip_of_the_stored_position_closes_it_and_opens_the_rest() -> None:
    before = fold([buy("2", "100", 0, trade_id="a")], ETH).position
    entries = [sell("3", "110", 1, trade_id="b"), buy("1", "105", 2, trade_id="c")]
    # b closes the stored long and opens a short, c closes that short: nothing is left open
    assert batch_events(entries, before) == [("closed", "b"), ("opened", "b"), ("closed", "c")]


def test_changes_of_a_continuing_position_are_one_changed_event_with_the_final_state() -> None:
    before = fold([buy("1", "100", 0, trade_id="a")], ETH).position
    entries = [buy("1", "110", 1, trade_id="b"), buy("2", "120", 2, trade_id="c")]
    result = fold(entries, ETH, before)
    [event] = SlotChange(SLOT, before, result).at(entries[-1].key, "simulated").events()
    assert (event.kind, event.trade_id) == ("changed", "c")
    assert event.position is not None and event.position.quantity == D("4")


def test_uuid7_is_version_7_and_ordered_by_time() -> None:
    first = uuid7()
    assert first.version == 7 and first.variant == "specified in RFC 4122"
    assert int(first.hex[:12], 16) // 1000 > 1_700_000_000  # milliseconds since 1970
    millis = int(first.hex[:12], 16)
    later = uuid7()
    while int(later.hex[:12], 16) == millis:  # the next millisecond
        later = uuid7()
    assert later > first


# --- what a batch changed in a slot (events.py, pure) -------------------------------------

PLAN = {"stop_loss": "90"}


@pytest.mark.parametrize(("new", "last_stored", "refold"), [
    pytest.param([buy("1", "100", 5)], None, False, id="nothing-stored-yet"),
    pytest.param([buy("1", "100", 5)], (at(4), 1, id_key("x")), False, id="after-the-last-stored-entry"),
    pytest.param([buy("1", "100", 3), buy("1", "100", 6)], (at(4), 1, id_key("x")), True,
                 id="one-new-entry-before-the-last-stored-one"),
    pytest.param([buy("1", "100", 4, trade_id="a")], (at(4), 1, id_key("b")), True,
                 id="same-instant-smaller-trade-id"),
    pytest.param([buy("1", "100", 4, trade_id="99")], (at(4), 1, id_key("100")), True,
                 id="same-instant-trade-99-before-100-as-integers"),
    pytest.param([buy("1", "100", 4, trade_id="100")], (at(4), 1, id_key("99")), False,
                 id="same-instant-trade-100-after-99-as-integers"),
    pytest.param([funding("1", 4)], (at(4), 1, id_key("x")), True,
                 id="funding-sorts-before-a-fill-at-the-same-instant"),
])
def test_a_slot_is_refolded_when_a_new_entry_sorts_before_its_last_stored_one(
    new: list[Entry], last_stored: EntryKey | None, refold: bool
) -> None:
    assert needs_refold(new, last_stored) is refold


def test_the_slot_of_a_fill_and_of_a_funding_payment() -> None:
    account = uuid4()
    f = Fill(account_id=account, mode="simulated", inst_id="ETH-USDT-SWAP", trade_id="1", ord_id="o",
             side="sell", pos_side="short", fill_px=D(1), fill_sz=D(1), fill_fee=D(0), ts_event=at(0))
    p = FundingPayment(account_id=account, mode="simulated", inst_id="ETH-USDT-SWAP", bill_id="b",
                       amount=D(1), pos_side="short", ts_event=at(0))
    assert slot_of(f) == slot_of(p) == Slot(account, "ETH-USDT-SWAP", "short")


OPEN_2 = [buy("2", "100", 0, trade_id="a")]


@pytest.mark.parametrize(("batch", "continuing"), [
    pytest.param([buy("1", "110", 1)], True, id="add"),
    pytest.param([sell("1", "110", 1)], True, id="reduce"),
    pytest.param([sell("2", "110", 1)], False, id="close"),
    pytest.param([sell("3", "110", 1)], False, id="flip"),
    pytest.param([sell("2", "110", 1), buy("2", "100", 2)], False, id="close-and-reopen-same-side"),
])
def test_the_stored_row_continues_only_while_it_is_the_same_position(
    batch: list[Entry], continuing: bool
) -> None:
    before = fold(OPEN_2, ETH).position
    change = SlotChange.folded(SLOT, before, batch, ETH)
    assert change.continuing is continuing
    assert change.replaces_stored is not continuing


def test_nothing_stored_is_never_replaced() -> None:
    change = SlotChange.folded(SLOT, None, [buy("1", "100", 0)], ETH)
    assert not change.continuing and not change.replaces_stored


def test_a_refold_keeps_the_exit_plans_of_the_stored_rows() -> None:
    # Stored: a long closed by b (its closed row has a plan), then a long opened by c (its open
    # row has another). A late fill at c's instant, with a smaller trade id, refolds the slot.
    ledger = [buy("1", "100", 0, trade_id="a"), sell("1", "110", 1, trade_id="b"),
              buy("1", "120", 2, trade_id="c")]
    stored = fold(ledger, ETH)
    before = replace(stored.position, exit_plan=PLAN) if stored.position else None
    old_closed = [replace(c, exit_plan={"take_profit": "130"}) for c in stored.closed]
    late = buy("1", "119", 2, trade_id="b2")  # now opens the second long, c adds to it
    change = SlotChange.refolded(SLOT, before, [*ledger, late], old_closed, ETH)
    [closed] = change.result.closed
    assert closed.closing_trade_id == "b" and closed.exit_plan == {"take_profit": "130"}
    pos = change.result.position
    assert pos is not None and pos.quantity == D("2") and pos.exit_plan == PLAN
    assert change.refold and change.continuing


def test_a_refold_publishes_only_what_was_not_published_before() -> None:
    ledger = [buy("1", "100", 0, trade_id="a"), sell("1", "110", 1, trade_id="b")]
    old = fold(ledger, ETH)
    late = buy("1", "101", 2, trade_id="c")  # after b, but the batch holds an older entry too
    early = funding("0", 0.5)  # refolds, and the funding lands on the first long
    change = SlotChange.refolded(SLOT, None, [*ledger, early, late], old.closed, ETH)
    events = change.at(late.key, "simulated").events()
    assert [(e.kind, e.trade_id) for e in events] == [("opened", "c")]  # b's close was published


def test_the_closed_row_of_the_stored_position_gets_the_plan_its_row_had() -> None:
    before = fold(OPEN_2, ETH).position
    change = SlotChange.folded(SLOT, before, [sell("2", "110", 1, trade_id="b")], ETH)
    [closed] = change.closing_plan(PLAN).result.closed
    assert closed.exit_plan == PLAN


def test_position_events_stamp_every_event_of_a_batch_with_one_ts_init() -> None:
    other = Slot(uuid4(), ETH.symbol, "net")
    entries = [buy("1", "100", 0, trade_id="a")]
    changes = [SlotChange.folded(slot, None, entries, ETH).at(entries[-1].key, "live")
               for slot in (SLOT, other)]
    events = position_events(changes)
    assert [(e.account_id, e.kind, e.mode) for e in events] == [
        (SLOT.account_id, "opened", "live"), (other.account_id, "opened", "live")]
    assert len({e.ts_init for e in events}) == 1


def test_every_event_is_what_the_models_validate_from_its_own_values() -> None:
    # Events are copies of templates with every field replaced (no validation): a field left
    # over from a template, or a value of the wrong type, would show here.
    before = fold([buy("2", "100", 0, trade_id="a")], ETH).position
    entries = [sell("3", "110", 1, trade_id="b"), buy("2", "105", 2, trade_id="c")]
    change = SlotChange.folded(SLOT, before, entries, ETH).at(entries[-1].key, "live")
    events = change.events()
    assert [e.kind for e in events] == ["closed", "opened", "closed", "opened"]
    for event in events:
        validated = PositionEvent.model_validate(event.model_dump())
        assert validated.model_dump() == event.model_dump()
        assert PositionEvent.model_validate_json(event.to_bytes()) == validated
        assert event.model_fields_set >= set(PositionEvent.model_fields) - {"schema_version"}
