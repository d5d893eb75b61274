"""Dead letters per account: the writer keeps the account a message names (its subject, else its
body; never failing the write for it), and the console pages them under the token's accounts."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from aitrader import migrations
from services.console.paging import encode_cursor
from shared.consumer import PERMANENT, DeadLetter, DeadLetters
from shared.subjects import STREAM_ACCOUNT, STREAM_MARKET, Subjects
from tests.console.conftest import Seeded
from tests.console.seed import T0


async def _delivered(js: JetStreamContext, subject: str, stream: str, payloads: list[bytes],
                     stored: str | None = None) -> list[Msg]:
    """Publish and fetch back as a durable consumer would (with JetStream's metadata; `stored`:
    the filter of the stored form, on a partitioned stream)."""
    for payload in payloads:
        await js.publish(subject, payload)
    sub = await js.pull_subscribe(stored or subject, durable=f"t{secrets.token_hex(3)}", stream=stream)
    msgs: list[Msg] = await sub.fetch(len(payloads), timeout=5)
    return msgs


async def test_a_dead_letter_keeps_the_account_its_subject_or_body_names(
    db_pool: asyncpg.Pool, js: JetStreamContext, nc: Client, subjects: Subjects, seeded: Seeded
) -> None:
    on_a = subjects.fill(seeded.a, "BTC-USDT-SWAP")
    market = subjects.candle("1m", "BTC-USDT-SWAP")
    not_an_id = subjects.fill("acct-7", "BTC-USDT-SWAP")  # the subject's token is no UUID
    body_b = json.dumps({"account_id": str(seeded.b)}).encode()
    msgs = [
        *await _delivered(js, on_a, subjects.stream(STREAM_ACCOUNT), [body_b],  # the subject wins
                          subjects.stored_filter(on_a)),
        *await _delivered(js, market, subjects.stream(STREAM_MARKET), [body_b, b"\xff\x00", b"[1]"]),
        *await _delivered(js, not_an_id, subjects.stream(STREAM_ACCOUNT), [b'{"account_id": "x"}', b"{"],
                          subjects.stored_filter(not_an_id)),
    ]
    letters = DeadLetters("svc", nc, subjects.dead_letter("svc"), subjects=subjects)
    for msg in msgs:
        await letters.record(db_pool, msg, DeadLetter("bad", PERMANENT))
    rows = await db_pool.fetch(
        "SELECT account_id FROM aitrader.dead_letters WHERE service = 'svc' ORDER BY id"
    )
    assert [r["account_id"] for r in rows] == [seeded.a, seeded.b, None, None, None, None]
    # without the subjects (a writer that does not know the root), the body still names it
    await DeadLetters("body", nc, subjects.dead_letter("body")).record(
        db_pool, msgs[1], DeadLetter("bad", PERMANENT)
    )
    assert await db_pool.fetchval("SELECT account_id FROM aitrader.dead_letters WHERE service = 'body'") == (
        seeded.b
    )


async def _letters(pool: asyncpg.Pool, account: UUID, n: int, service: str, kind: str) -> None:
    await pool.executemany(
        """INSERT INTO aitrader.dead_letters (service, subject, reason, error_type, payload, headers,
               account_id, created_at) VALUES ($1, 's', 'r', $2, $3, $4, $5, $6)""",
        [
            (service, kind, f"p{i}", {"k": str(i)}, account, T0 + timedelta(minutes=i % 3))
            for i in range(1, n + 1)
        ],
    )


async def _get(client: httpx.AsyncClient, seeded: Seeded, **params: str) -> Any:
    answer = await client.get("/api/v1/accounts/A/dead-letters", params=params, headers=seeded.auth)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_the_console_pages_the_accounts_dead_letters_and_filters_them(
    client: httpx.AsyncClient, seeded: Seeded, db_pool: asyncpg.Pool
) -> None:
    await _letters(db_pool, seeded.a, 5, "metrics", "unknown")
    await _letters(db_pool, seeded.b, 4, "metrics", "unknown")  # B's: never shown to A's token
    await _letters(db_pool, None, 2, "metrics", "unknown")  # no account: no token sees them
    seen: list[dict[str, Any]] = []
    page = await _get(client, seeded, limit="2")
    while True:
        seen += page["items"]
        if page["next_cursor"] is None:
            break
        page = await _get(client, seeded, limit="2", cursor=page["next_cursor"])
    mine = await db_pool.fetch("SELECT id FROM aitrader.dead_letters WHERE account_id = $1", seeded.a)
    assert sorted(r["id"] for r in seen) == sorted(r["id"] for r in mine) and len(seen) == 6
    keys = [(r["created_at"], r["id"]) for r in seen]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 6
    first = next(r for r in seen if r["payload"] == "p1")
    assert first["headers"] == {"k": "1"} and first["error_type"] == "unknown" and first["stream"] is None
    assert {r["service"] for r in (await _get(client, seeded, service="positions"))["items"]} == {"positions"}
    assert len((await _get(client, seeded, error_type="unknown"))["items"]) == 5
    window = await _get(client, seeded, **{"from": "2026-11-01T00:01:00Z", "to": "2026-11-01T00:02:00Z"})
    assert {r["created_at"] for r in window["items"]} == {"2026-11-01T00:01:00Z"}


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        pytest.param({"cursor": encode_cursor(T0, UUID(int=1))}, "cursor", id="uuid-cursor"),
        pytest.param({"service": "Bad Name"}, "service", id="service"),
        pytest.param({"symbol": "BTC-USDT-SWAP"}, "symbol", id="unknown-filter"),
    ],
)
async def test_bad_parameters_of_the_dead_letters_are_422(
    client: httpx.AsyncClient, seeded: Seeded, params: dict[str, str], loc: str
) -> None:
    answer = await client.get("/api/v1/accounts/A/dead-letters", params=params, headers=seeded.auth)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][-1] == loc, answer.text


async def test_another_accounts_dead_letters_are_404(client: httpx.AsyncClient, seeded: Seeded) -> None:
    answer = await client.get("/api/v1/accounts/B/dead-letters", headers=seeded.auth)
    assert answer.status_code == 404


async def test_the_migration_gives_the_rows_written_before_their_subjects_account(
    db_pool: asyncpg.Pool, seeded: Seeded
) -> None:
    """0016's backfill statement, run again on rows without an account."""
    text = (Path(migrations.__file__).parent / "0016_console_reads.sql").read_text()
    backfill = text[text.index("UPDATE aitrader.dead_letters") :].split(";")[0]
    subjects = [
        f"aitrader.account.{seeded.a}.fill.BTC-USDT-SWAP",
        f"t1.positions.{seeded.b}.ETH-USDT-SWAP",
        f"aitrader.account.{seeded.a}.balance",
        "aitrader.market.candle.1m.BTC-USDT-SWAP",
        f"aitrader.account.{uuid4()}.fill.BTC-USDT-SWAP",  # no such account
    ]
    await db_pool.executemany(
        "INSERT INTO aitrader.dead_letters (service, subject, reason, payload) VALUES ('old', $1, 'r', '')",
        [(s,) for s in subjects],
    )
    await db_pool.execute(backfill)
    rows = await db_pool.fetch(
        "SELECT account_id FROM aitrader.dead_letters WHERE service = 'old' ORDER BY id"
    )
    assert [r["account_id"] for r in rows] == [seeded.a, seeded.b, seeded.a, None, None]
