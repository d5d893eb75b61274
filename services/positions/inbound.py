"""Account messages as they come off the ACCOUNT stream: subject -> kind -> validated event.

Everything a message can get wrong by itself is caught here, with a specific reason, before
any database work: malformed subject, schema-invalid body, subject and body disagreeing,
numbers that cannot fit their columns, a fee in a currency other than USDT. A fill (the hot
message) is decoded by `shared.wire.decode_fill` into a `LeanFill`, which accepts and refuses
exactly as the `Fill` model does; the other kinds by their models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

import msgspec
from pydantic import ValidationError

from shared.errors import PermanentError
from shared.messages import (
    SCHEMA_VERSION,
    AccountEvent,
    AlgoOrderUpdate,
    Balance,
    ExchangePosition,
    Fill,
    FundingPayment,
    OrderUpdate,
    check_size,
)
from shared.money import Q8, quantize
from shared.subjects import STREAM_ACCOUNT, Subjects, models_of
from shared.wire import AnyFill, LeanFill, decode_fill

MODELS = models_of(STREAM_ACCOUNT, AccountEvent)
FILL_KIND = next(kind for kind, model in MODELS.items() if model is Fill)
LedgerEvent = AccountEvent | LeanFill  # a fill arrives as a LeanFill, or as a Fill in tests
LedgerEntryEvent = Fill | LeanFill | FundingPayment  # what the ledger stores and folds
# Largest absolute value of NUMERIC(20,8) and NUMERIC(24,8) columns.
LIMIT_20_8 = Decimal("1e12")
LIMIT_24_8 = Decimal("1e16")


@dataclass(frozen=True, slots=True)
class Inbound:
    """One parsed message of a batch; `index` is its place in the fetched batch."""

    index: int
    subject: str
    event: LedgerEvent
    body: str  # the message as received, kept as the row's raw_payload
    published: Callable[[], datetime]  # read only when needed (an unknown instrument)

    @property
    def published_at(self) -> datetime:
        """When JetStream stored the message."""
        return self.published().astimezone(UTC)


def parse(
    index: int, subject: str, data: bytes, root: str, published: Callable[[], datetime]
) -> Inbound:
    """Validate one message; any defect is a `PermanentError` naming it."""
    route, tokens = _subjects(root).parse(subject)
    kind = route.kind
    if kind not in MODELS:
        raise PermanentError(f"not an account subject: {subject}")
    check_size(data)
    event: LedgerEvent
    try:
        body = data.decode("utf-8")
        event = decode_fill(data) if kind == FILL_KIND else MODELS[kind].model_validate_json(body)
    except UnicodeDecodeError:
        raise PermanentError(f"{kind} message is not UTF-8") from None
    except ValidationError as exc:
        raise PermanentError(f"schema-invalid {kind}: {_first_errors(exc)}") from None
    if event.schema_version != SCHEMA_VERSION:
        raise PermanentError(f"unsupported schema_version {event.schema_version}")
    account, inst_id = tokens["account_id"], tokens.get("inst_id")
    if str(event.account_id) != account:
        raise PermanentError(f"subject account {account} != body account {event.account_id}")
    body_inst = getattr(event, "inst_id", None)
    if inst_id is not None and body_inst != inst_id:
        raise PermanentError(f"subject instrument {inst_id} != body instrument {body_inst}")
    _check_values(event)
    # A NUL byte itself is invalid JSON; its escape is the substring, cheap to look for.
    if "\\u0000" in body and _holds_nul(_values(event)):
        raise PermanentError(f"{kind} holds NUL (U+0000) in a string, which PostgreSQL refuses")
    return Inbound(index, subject, event, body, published)


@lru_cache(maxsize=16)
def _subjects(root: str) -> Subjects:
    """The namespace of a root (the consumer passes its root, one per process)."""
    return Subjects(root)


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _values(event: LedgerEvent) -> object:
    if isinstance(event, LeanFill):
        return msgspec.structs.asdict(event)
    return event.model_dump()


def _holds_nul(value: object) -> bool:
    """A string anywhere in the (dumped) event holds NUL. Refused here rather than by
    PostgreSQL: its refusal fails the whole batch, which is then retried one message per
    transaction to find the culprit (a few such messages made the ledger ~5x slower)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _check_values(event: LedgerEvent) -> None:
    if isinstance(event, AnyFill):
        _fits("fill_px", event.fill_px, LIMIT_20_8)
        _fits("fill_sz", event.fill_sz, LIMIT_20_8)
        _fits("fill_fee", event.fill_fee, LIMIT_20_8)
        if event.fill_fee_ccy not in ("USDT", "") and event.fill_fee:
            raise PermanentError(f"fee in {event.fill_fee_ccy}: only USDT fees can be folded")
        if not event.trade_id.strip():
            raise PermanentError("fill without a trade_id")
        if quantize(event.fill_sz, Q8) == 0 or quantize(event.fill_px, Q8) == 0:
            raise PermanentError("fill size and price must be at least 1e-8 (NUMERIC(20,8))")
    elif isinstance(event, FundingPayment):
        _fits("amount", event.amount, LIMIT_24_8)
    elif isinstance(event, OrderUpdate):
        for name in ("px", "sz", "acc_fill_sz", "avg_px"):
            _fits(name, getattr(event, name), LIMIT_20_8)
    elif isinstance(event, Balance):
        if event.ccy != "USDT":
            raise PermanentError(f"balance in {event.ccy}: balance_snapshots hold USDT only")
        for name in ("cash_bal", "avail_bal", "frozen_bal", "eq"):
            _fits(name, getattr(event, name), LIMIT_24_8)
    elif isinstance(event, AlgoOrderUpdate):
        for name in ("sz", "close_fraction", "tp_trigger_px", "tp_ord_px", "sl_trigger_px",
                     "sl_ord_px", "actual_sz"):
            value = getattr(event, name)
            _fits(name, value if isinstance(value, Decimal) else None, LIMIT_20_8)
    elif isinstance(event, ExchangePosition):
        for name in ("liq_px", "mark_px"):
            _fits(name, getattr(event, name), LIMIT_20_8)
        for name in ("margin", "upl"):
            _fits(name, getattr(event, name), LIMIT_24_8)


def _fits(name: str, value: Decimal | None, limit: Decimal) -> None:
    if value is not None and (not value.is_finite() or abs(value) >= limit):
        raise PermanentError(f"{name} {value} does not fit its column (|x| < {limit:.0e})")
