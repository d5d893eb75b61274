"""Hostile messages (tests/faults/hostile.py) interleaved with valid fills on the account
subjects, consumed by the positions process (`python -m services.positions`): exactly one dead
letter of the expected kind for each bad message, none for a copy of a valid fill, positions
equal the fold of the valid fills, nothing left pending, and the process's resident memory
within twice its idle figure."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext
from nats.js.api import PubAck

from services.positions.partitions import backlog
from shared.bus import headers_for
from shared.messages import Fill
from shared.settings import Settings
from shared.subjects import DEFAULT_PARTITIONS, Subjects
from tests.factories import create_account, create_instruments
from tests.faults.hostile import LEDGER_DUPLICATE, STREAM_DUPLICATE, Context, Hostile, interleave
from tests.faults.processes import PositionsProcess, report, size
from tests.positions.conftest import CONSUMER, consumed, consumer_ready
from tests.positions.test_crash import assert_positions_equal_the_fold, ledger

HOSTILE = size(1_500, 10_000)
VALID = size(150, 1_000)


async def publish_all(
    js: JetStreamContext, subjects: Subjects, messages: list[Hostile | Fill]
) -> list[PubAck]:
    """Publish in order; every message's PubAck."""
    futures = []
    headers: dict[str, str] | None
    for m in messages:
        if isinstance(m, Fill):
            subject, body, headers = subjects.for_event(m), m.to_bytes(), headers_for(m)
        else:
            subject, body, headers = m.subject, m.body, m.headers
        futures.append(await js.publish_async(subject, body, headers=headers))
    return list(await asyncio.wait_for(asyncio.gather(*futures), 120))


def expected_letters(messages: list[Hostile | Fill], acks: list[PubAck]) -> dict[int, str]:
    """stream sequence -> dead-letter kind, for every message that must be dead-lettered."""
    letters = {}
    for m, ack in zip(messages, acks, strict=True):
        if isinstance(m, Hostile) and m.outcome == STREAM_DUPLICATE:
            assert ack.duplicate, f"JetStream stored a copy with the same Nats-Msg-Id: {m.case}"
        elif isinstance(m, Fill) or m.outcome == LEDGER_DUPLICATE:
            assert not ack.duplicate, "a message that must be delivered was dropped by JetStream"
        else:
            assert not ack.duplicate, m.case
            letters[ack.seq] = m.outcome
    return letters


def got_its_outcome(m: Hostile, ack: PubAck, found: dict[int, str]) -> bool:
    """Dropped by JetStream, or delivered and not dead-lettered, or dead-lettered of its kind."""
    if m.outcome == STREAM_DUPLICATE:
        return bool(ack.duplicate)
    return found.get(ack.seq) == (None if m.outcome == LEDGER_DUPLICATE else m.outcome)


def per_case(messages: list[Hostile | Fill], acks: list[PubAck], found: dict[int, str]) -> list[str]:
    """One line per case: its outcome, how many got exactly that outcome / how many sent."""
    sent: Counter[tuple[str, str]] = Counter()
    right: Counter[tuple[str, str]] = Counter()
    for m, ack in zip(messages, acks, strict=True):
        if isinstance(m, Hostile):
            sent[(m.case, m.outcome)] += 1
            right[(m.case, m.outcome)] += got_its_outcome(m, ack, found)
    return [f"{case}: {outcome} {right[(case, outcome)]}/{n}" for (case, outcome), n in sent.items()]


@pytest.mark.timeout(size(120, 600))
async def test_hostile_messages_are_one_dead_letter_each_and_the_ledger_folds_the_valid_fills(
    settings: Settings, js: JetStreamContext, subjects: Subjects, db_pool: asyncpg.Pool, tmp_path: Path,
) -> None:
    await create_instruments(db_pool)
    accounts = [await create_account(db_pool, f"hostile-{n}") for n in range(3)]
    valid = ledger(accounts, seed=13)[:VALID]
    messages = interleave(lambda i: Context(subjects, accounts[0], valid[:i]), valid, HOSTILE)
    # No grace for an unknown instrument (300 s by default): dead-lettered at once.
    service = PositionsProcess(settings, tmp_path / "positions.log",
                               {"AITRADER_POSITIONS_INSTRUMENT_GRACE_SECONDS": "0"})
    await service.start()
    try:
        await service.ready()
        await consumer_ready(js, subjects)
        idle = service.rss_kib()
        started = time.monotonic()
        acks = await publish_all(js, subjects, messages)
        await consumed(js, subjects, timeout=size(90, 400))
        took = time.monotonic() - started
        busy = service.rss_kib()
        assert service.proc is not None and service.proc.returncode is None, service.log_tail()
    finally:
        await service.stop()

    state = await backlog(js, subjects, CONSUMER, DEFAULT_PARTITIONS)
    assert state.delivered_stream_seq == max(a.seq for a in acks)  # every message was delivered
    expected = expected_letters(messages, acks)
    rows = await db_pool.fetch(
        "SELECT stream_seq, error_type FROM aitrader.dead_letters WHERE service = 'positions'")
    found = {r["stream_seq"]: r["error_type"] for r in rows}
    lines = per_case(messages, acks, found)
    report(f"hostile: {HOSTILE:,} hostile + {VALID:,} valid fills in {took:.1f} s; dead letters "
           f"{len(rows):,} found / {len(expected):,} expected; RSS idle {idle:,} KiB, after {busy:,} KiB "
           f"({busy / idle:.2f}x)\n  " + "\n  ".join(lines))
    assert len(rows) == len(found)  # one row per message
    assert found == expected
    stored = await db_pool.fetch("SELECT exchange_trade_id FROM aitrader.fills ORDER BY 1")
    assert [r[0] for r in stored] == sorted(f.trade_id for f in valid)
    await assert_positions_equal_the_fold(db_pool, valid)
    # Every case here is refused before the database: none costs a batch retried one message
    # per transaction (what a value PostgreSQL refuses costs, e.g. a NUL before the fix).
    assert '"isolating_batch"' not in service.log_path.read_text(), "a batch was isolated"
    assert busy <= 2 * idle, f"resident memory grew from {idle} KiB idle to {busy} KiB"
