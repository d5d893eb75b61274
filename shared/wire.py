"""A lean decode of the hottest message, `Fill`, straight from its bytes (msgspec), for the
ledger's hot path; the pydantic model stays the contract and the one home of its rules.

`decode_fill(data)` accepts exactly what `Fill.model_validate_json(data)` accepts, with the same
values: msgspec takes the canonical form our publishers write — decimals as JSON strings,
RFC 3339 times with at most microseconds — into a `LeanFill` whose field names, vocabularies,
size limits, defaults and numeric bounds are read from `Fill` (checked at import). Anything
else (a JSON number for a decimal, which pydantic reads through a float; a non-finite
decimal; more than six fractional digits of a second, which msgspec rounds and pydantic
truncates; any defect at all) goes to the model, whose verdict — its value, or its
`ValidationError` — is the answer. So the fast path can only accept early, never refuse.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from types import UnionType
from typing import Annotated, Any, Final, Literal, Union, get_args, get_origin
from uuid import UUID

import annotated_types
import msgspec

from shared.messages import CODE_MAX_LENGTH, ID_MAX_LENGTH, SCHEMA_VERSION, Fill
from shared.types import Mode, PosSide, Side


class JsonDecimal(Decimal):
    """A Decimal of a lean message: decoded only from a JSON string (exact), never a number."""


_Id = Annotated[str, msgspec.Meta(max_length=ID_MAX_LENGTH)]
_Code = Annotated[str, msgspec.Meta(max_length=CODE_MAX_LENGTH)]
_Time = Annotated[datetime, msgspec.Meta(tz=True)]  # AwareDatetime


class LeanFill(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """`Fill`'s fields as a plain struct (same names and defaults, checked against the model
    at import): the ledger reads it like the model. Not tracked by the garbage collector
    (`gc=False`): it holds JSON values only, so it can be in no reference cycle."""

    ts_event: _Time
    account_id: UUID
    mode: Mode
    inst_id: _Id
    trade_id: _Id
    ord_id: _Id
    side: Side
    pos_side: PosSide
    fill_px: JsonDecimal
    fill_sz: JsonDecimal
    fill_fee: JsonDecimal
    schema_version: int = SCHEMA_VERSION
    event_id: UUID | None = None  # the model's default_factory; never read on the hot path
    ts_init: _Time | None = None  # idem
    cl_ord_id: _Id | None = None
    fill_fee_ccy: _Code = "USDT"
    fill_pnl: JsonDecimal | None = None
    exec_type: _Code | None = None
    category: _Code = "normal"
    lever: JsonDecimal | None = None
    ord_type: _Code | None = None
    reduce_only: bool | None = None
    algo_id: _Id | None = None
    raw: dict[str, Any] = {}

    @classmethod
    def of(cls, fill: Fill) -> LeanFill:
        """The lean form of a validated model (the slow path's answer, and tests)."""
        values = {name: getattr(fill, name) for name in Fill.model_fields}
        for name in _DECIMALS:
            if values[name] is not None:
                values[name] = JsonDecimal(values[name])
        return cls(**values)


AnyFill = Fill | LeanFill  # what the ledger accepts as a fill


class _Slow(Exception):
    """The fast path declines: the model decides."""


def _decimal(kind: type, value: object) -> JsonDecimal:
    if kind is JsonDecimal and type(value) is str:
        try:
            number = JsonDecimal(value)
        except ArithmeticError:  # decimal.InvalidOperation: not a number at all
            raise _Slow from None
        if number.is_finite():  # pydantic refuses NaN and infinities: let it say so
            return number
    raise _Slow


_DECODER: Final = msgspec.json.Decoder(LeanFill, dec_hook=_decimal)
_DECIMALS: Final = tuple(f.name for f in msgspec.structs.fields(LeanFill)
                         if JsonDecimal in (f.type, *get_args(f.type)))
# A time with more than microseconds: msgspec rounds the 7th digit, pydantic truncates.
_LONG_FRACTION: Final = re.compile(rb":\d\d\.\d{7}")


def _bounds(model: type[Fill]) -> tuple[tuple[str, Any], ...]:
    """The model's numeric bounds (Gt, Ge, Lt, Le on a field), read from the model itself."""
    found = []
    for name, info in model.model_fields.items():
        for rule in info.metadata:
            if isinstance(rule, annotated_types.Gt | annotated_types.Ge | annotated_types.Lt
                          | annotated_types.Le):
                found.append((name, rule))
    return tuple(found)


_BOUNDS: Final = _bounds(Fill)


def _within(value: Any, rule: Any) -> bool:
    if isinstance(rule, annotated_types.Gt):
        return bool(value > rule.gt)
    if isinstance(rule, annotated_types.Ge):
        return bool(value >= rule.ge)
    if isinstance(rule, annotated_types.Lt):
        return bool(value < rule.lt)
    return bool(value <= rule.le)


def fast_fill(data: bytes) -> LeanFill | None:
    """The msgspec path alone: a `LeanFill`, or None when the model must decide."""
    if _LONG_FRACTION.search(data):
        return None
    try:
        fill = _DECODER.decode(data)
    except (msgspec.DecodeError, _Slow):  # ValidationError is a DecodeError
        return None
    for name, rule in _BOUNDS:
        value = getattr(fill, name)
        if value is not None and not _within(value, rule):
            return None
    return fill


def decode_fill(data: bytes) -> LeanFill:
    """A fill from its bytes: fast when canonical, else the model's verdict (its
    `ValidationError` propagates)."""
    fill = fast_fill(data)
    return fill if fill is not None else LeanFill.of(Fill.model_validate_json(data))


def _words(annotation: Any) -> frozenset[Any] | None:
    """The values of a Literal annotation (through `| None`), or None for any other type."""
    if get_origin(annotation) is Literal:
        return frozenset(get_args(annotation))
    found = [w for arg in get_args(annotation) if (w := _words(arg)) is not None]
    return found[0] if get_origin(annotation) in (Union, UnionType) and found else None


def _check_mirror(struct: type[msgspec.Struct], model: type[Fill]) -> None:
    """A lean struct has its model's fields, vocabularies, optionality and defaults (a
    default_factory excepted); its size limits are the same constants, its bounds read from
    the model. LeanFill is checked at import."""
    lean = {f.name: f for f in msgspec.structs.fields(struct)}
    if lean.keys() != model.model_fields.keys():
        differ = lean.keys() ^ model.model_fields.keys()
        raise TypeError(f"{struct.__name__} fields differ from {model.__name__}: {sorted(differ)}")
    for name, info in model.model_fields.items():
        field = lean[name]
        if _words(field.type) != _words(info.annotation):
            raise TypeError(f"{struct.__name__}.{name}: vocabulary {_words(field.type)}, the model's"
                            f" {_words(info.annotation)}")
        if field.required != info.is_required():
            raise TypeError(f"{struct.__name__}.{name}: required here and not in the model, or the reverse")
        factory = field.default_factory
        default = factory() if factory is not msgspec.NODEFAULT else field.default
        if info.default_factory is not None:  # an event id, a time of ours: None; else the same
            wanted = info.default_factory()  # type: ignore[call-arg]
            if default is not None and default != wanted:
                raise TypeError(f"{struct.__name__}.{name}: default {default!r}, the model's {wanted!r}")
        elif not field.required and default != info.default:
            raise TypeError(f"{struct.__name__}.{name}: default {default!r}, the model's {info.default!r}")


_check_mirror(LeanFill, Fill)
