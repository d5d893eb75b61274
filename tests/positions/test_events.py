"""Which position events one batch publishes for one slot (pure: fold -> SlotChange.events)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal as D
from uuid import uuid4

from services.positions.domain import Entry, Position, fold
from services.positions.events import Slot, SlotChange
from services.positions.ids import uuid7
from tests.positions.test_domain import ETH, buy, sell

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
