"""A catalogue of hostile messages on the account subjects the positions service consumes, each
with the outcome the service must give it: a dead letter of a given kind (shared.consumer,
`aitrader.dead_letters.error_type`), or, for a copy of a valid fill, no dead letter at all — a
copy with the fill's Nats-Msg-Id is dropped by JetStream (never delivered), a copy under
another id is delivered and dropped by the ledger's unique key (never folded twice)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from shared.bus import headers_for
from shared.messages import MAX_EVENT_BYTES, Fill
from shared.subjects import Subjects

PERMANENT, OVERSIZED = "permanent", "oversized"
STREAM_DUPLICATE = "stream duplicate"  # dropped by JetStream inside its duplicate window
LEDGER_DUPLICATE = "ledger duplicate"  # delivered, dropped by the fills' unique key
BTC = "BTC-USDT-SWAP"


@dataclass(frozen=True, slots=True)
class Hostile:
    """One message to publish, and its expected outcome (a dead-letter kind or a duplicate's)."""

    case: str
    subject: str
    body: bytes
    outcome: str
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Context:
    """What a case is built from: the namespace, a real account, the valid fills so far."""

    subjects: Subjects
    account: UUID
    valid: Sequence[Fill]  # published before this message (a copy must follow its original)

    def body(self, n: int, **changes: Any) -> dict[str, Any]:
        """A valid-looking fill of trade id h<n> as JSON, with `changes` (None: drop the key)."""
        base = json.loads(self.valid[0].to_bytes())
        body = {**base, "account_id": str(self.account), "inst_id": BTC, "trade_id": f"h{n}",
                "ord_id": f"oh{n}", **changes}
        return {k: v for k, v in body.items() if v is not None}

    def fill_subject(self, inst: str = BTC, account: UUID | str | None = None) -> str:
        return self.subjects.fill(account or self.account, inst)


Case = Callable[[Context, int], Hostile]


def _fill_case(case: str, outcome: str = PERMANENT, **changes: Any) -> Case:
    """A fill on its own subject whose body differs from a valid one by `changes`."""
    def build(ctx: Context, n: int) -> Hostile:
        return Hostile(case, ctx.fill_subject(), json.dumps(ctx.body(n, **changes)).encode(), outcome)
    return build


def _raw_case(case: str, body: Callable[[Context, int], bytes], outcome: str = PERMANENT) -> Case:
    def build(ctx: Context, n: int) -> Hostile:
        return Hostile(case, ctx.fill_subject(), body(ctx, n), outcome)
    return build


def _truncated(ctx: Context, n: int) -> bytes:
    data = json.dumps(ctx.body(n)).encode()
    return data[: 1 + n % (len(data) - 1)]


def _huge(ctx: Context, n: int) -> bytes:
    pad = MAX_EVENT_BYTES + 1 + (n % 3) * 100_000  # just over the limit, and far over it
    return json.dumps(ctx.body(n, raw={"x": "y" * pad})).encode()


def _unknown_account(ctx: Context, n: int) -> Hostile:
    stranger = uuid4()
    body = json.dumps(ctx.body(n, account_id=str(stranger))).encode()
    return Hostile("unknown account", ctx.fill_subject(account=stranger), body, PERMANENT)


def _unknown_instrument(ctx: Context, n: int) -> Hostile:
    body = json.dumps(ctx.body(n, inst_id="SOL-USDT-SWAP")).encode()
    return Hostile("unknown instrument", ctx.fill_subject("SOL-USDT-SWAP"), body, PERMANENT)


def _subject_mismatch(ctx: Context, n: int) -> Hostile:
    body = json.dumps(ctx.body(n)).encode()
    return Hostile("subject and body disagree", ctx.fill_subject("ETH-USDT-SWAP"), body, PERMANENT)


def _unknown_kind(ctx: Context, n: int) -> Hostile:
    subject = f"{ctx.subjects.root}.account.{ctx.account}.bogus.{BTC}"
    return Hostile("no route for the subject", subject, json.dumps(ctx.body(n)).encode(), PERMANENT)


def _other(case: str, subject: Callable[[Context], str], body: Callable[[Context, int], Any]) -> Case:
    """A hostile message on another account subject (order, balance, position, funding)."""
    def build(ctx: Context, n: int) -> Hostile:
        return Hostile(case, subject(ctx), json.dumps(body(ctx, n)).encode(), PERMANENT)
    return build


def _account_fields(ctx: Context) -> dict[str, Any]:
    return {"account_id": str(ctx.account), "mode": "simulated", "ts_event": "2026-03-01T00:00:00Z"}


def _copy_same_msg_id(ctx: Context, n: int) -> Hostile:
    original = ctx.valid[n % len(ctx.valid)]
    return Hostile("copy, same Nats-Msg-Id", ctx.subjects.for_event(original), original.to_bytes(),
                   STREAM_DUPLICATE, headers_for(original))


def _copy_other_price(ctx: Context, n: int) -> Hostile:
    """The trade id of a fill already folded, another price, another Nats-Msg-Id: dropped."""
    original = ctx.valid[n % len(ctx.valid)]
    changed = original.model_copy(update={"fill_px": original.fill_px + 1})
    return Hostile("copy, same trade id, other price", ctx.subjects.for_event(original), changed.to_bytes(),
                   LEDGER_DUPLICATE, {"Nats-Msg-Id": f"hostile-{n}"})


def _btc_order(ctx: Context) -> str:
    return ctx.subjects.order(ctx.account, BTC)


CASES: tuple[Case, ...] = (
    _raw_case("not UTF-8", lambda ctx, n: b"\xff\xfe{" + bytes([0x80 + n % 64]) * 8),
    _raw_case("NUL bytes", lambda ctx, n: b"\x00" * (1 + n % 16)),
    _fill_case("NUL inside a field", trade_id="h\u0000"),
    _fill_case("NUL inside raw", raw={"k\u0000": ["v\u0000"]}),
    _raw_case("truncated JSON", _truncated),
    _raw_case("huge (> 64 KiB)", _huge, OVERSIZED),
    _raw_case("a JSON array", lambda ctx, n: b"[1, 2, 3]"),
    _fill_case("wrong type: number for a string", trade_id=12345),
    _fill_case("wrong type: list for a decimal", fill_sz=[1]),
    _fill_case("wrong type: bad time", ts_event="yesterday"),
    _fill_case("wrong enum", side="up"),
    _fill_case("missing field", fill_px=None),
    _fill_case("unknown field", colour="blue"),
    _fill_case("NaN price", fill_px="NaN"),
    _fill_case("infinite size", fill_sz="Infinity"),
    _fill_case("1e400 size", fill_sz="1e400"),
    _fill_case("-0 size", fill_sz="-0"),
    _fill_case("price below 1e-8", fill_px="1e-30"),
    _fill_case("price beyond the column", fill_px="9" * 40),
    _fill_case("exponent 1e-999999999 price", fill_px="1e-999999999"),
    _fill_case("fee in another currency", fill_fee="-1", fill_fee_ccy="BTC"),
    _fill_case("blank trade id", trade_id="  "),
    _fill_case("65-character trade id", trade_id="9" * 65),
    _fill_case("schema version 2", schema_version=2),
    _fill_case("wrong mode", mode="live"),
    _unknown_account,
    _unknown_instrument,
    _subject_mismatch,
    _unknown_kind,
    _other("order: missing fields", _btc_order, lambda ctx, n: {**_account_fields(ctx), "ord_id": f"x{n}"}),
    _other("balance in BTC", lambda ctx: ctx.subjects.balance(ctx.account),
           lambda ctx, n: {**_account_fields(ctx), "ccy": "BTC", "cash_bal": "1", "avail_bal": "1"}),
    _other("exchange position: NaN margin", lambda ctx: ctx.subjects.exchange_position(ctx.account, BTC),
           lambda ctx, n: {**_account_fields(ctx), "inst_id": BTC, "pos_side": "net", "pos": "1",
                           "margin": "NaN"}),
    _other("funding: 1e400 amount", lambda ctx: ctx.subjects.funding_payment(ctx.account, BTC),
           lambda ctx, n: {**_account_fields(ctx), "inst_id": BTC, "bill_id": f"b{n}", "amount": "1e400"}),
    _copy_same_msg_id,
    _copy_other_price,
)


def interleave(ctx_of: Callable[[int], Context], valid: Sequence[Fill], hostile: int) -> list[Hostile | Fill]:
    """`hostile` messages spread evenly among the valid fills, each copy after its original."""
    out: list[Hostile | Fill] = []
    per_valid = hostile / len(valid)
    made = 0
    for i, fill in enumerate(valid):
        out.append(fill)
        while made < round((i + 1) * per_valid):
            out.append(CASES[made % len(CASES)](ctx_of(i + 1), made))
            made += 1
    return out
