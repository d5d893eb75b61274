"""The lean fill decoder (`shared.wire`) against the `Fill` model: the same verdict and the same
values on every input — the canonical form, the odd forms pydantic accepts, invalid values and
hostile bytes — and the fast path alone never accepts what the model refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.positions.inbound import parse
from shared.errors import PermanentError
from shared.messages import CODE_MAX_LENGTH, ID_MAX_LENGTH, Fill
from shared.wire import JsonDecimal, LeanFill, _check_mirror, decode_fill, fast_fill

ACCOUNT = UUID("0184d9b0-4f9f-4156-8d9c-4b46e2435d25")
CANONICAL = Fill(
    account_id=ACCOUNT, mode="simulated", inst_id="BTC-USDT-SWAP", trade_id="123", ord_id="9",
    cl_ord_id="ab" * 16, side="buy", pos_side="net", fill_px=Decimal("61000.1"),
    fill_sz=Decimal("0.5"), fill_fee=Decimal("-0.0105"), ts_event=datetime(2026, 12, 3, 1, 2, 3, 456789, UTC),
)
BODY: dict[str, Any] = json.loads(CANONICAL.to_bytes())
DECIMALS = ("fill_px", "fill_sz", "fill_fee", "fill_pnl", "lever")

# Decimal forms: canonical strings, forms Python's Decimal reads (pydantic and msgspec both use
# it), non-finite strings pydantic refuses, JSON numbers pydantic reads through a float.
decimal_text = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["0", "-0", "1e5", "1E-30", " 1", "1_000", "+1", ".5", "1.", "NaN", "-Infinity",
                     "sNaN", "inf", "0x10", "", "1e999999999", "\u0661", "12345678901234567890.123456789"]),
)
decimal_value = st.one_of(
    decimal_text,
    st.sampled_from([1, 0, -3, 1.5, 0.1000000000000000055511151231257827, 1e400, 2**70]).map(
        lambda n: msgspec.Raw(repr(n).encode() if not isinstance(n, float) else str(n).encode())),
    st.decimals(allow_nan=False, allow_infinity=False, places=20).map(lambda d: msgspec.Raw(str(d).encode())),
)
time_text = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.sampled_from([
        "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00.1234567Z",
        "2026-01-01T00:00:00.9999999Z", "2026-01-01T00:00:00.123456789+01:00", "2026-01-01 00:00:00Z",
        "2026-01-01t00:00:00z", "2026-01-01T00:00:60Z", "2026-01-01T00:00Z", "2026-01-01T00:00:00-00:00",
        "2026-01-01T00:00:00+0100", "2026-01-01T00:00:00+24:00", "2026-02-29T00:00:00Z", "1700000000",
        "20260101T000000Z", "2026-01-01T00:00:00.Z",
    ]),
)
uuid_text = st.one_of(
    st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: str(u).upper()),
    st.sampled_from(["{" + str(ACCOUNT) + "}", "urn:uuid:" + str(ACCOUNT), "not-a-uuid"]))
text = st.one_of(st.text(max_size=ID_MAX_LENGTH + 2),
                 st.text(min_size=ID_MAX_LENGTH - 1, max_size=ID_MAX_LENGTH + 1),
                 st.sampled_from(["", "\x00", "😀" * 33, "😀" * 32]))
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
value_of = {
    **{name: decimal_value for name in DECIMALS},
    "ts_event": time_text, "ts_init": time_text, "account_id": uuid_text, "event_id": uuid_text,
    "mode": st.sampled_from(["live", "simulated", "paper", 1]),
    "side": st.sampled_from(["buy", "sell", "Buy", None]),
    "pos_side": st.sampled_from(["net", "long", "short", "both"]),
    "schema_version": st.sampled_from([1, 2, 1.0, "1", True, msgspec.Raw(b"1e0")]),
    "reduce_only": st.sampled_from([True, False, None, "true", 1, "yes"]),
    "raw": st.one_of(st.dictionaries(st.text(max_size=8), anything, max_size=4), anything),
    "fill_fee_ccy": st.one_of(text, st.just("x" * CODE_MAX_LENGTH), st.just("x" * (CODE_MAX_LENGTH + 1))),
}


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A fill body: each field kept, changed to an odd or invalid value, set null or dropped;
    sometimes an unknown field."""
    body: dict[str, Any] = {}
    for name, canonical in BODY.items():
        choice = draw(st.sampled_from(["keep"] * 6 + ["change"] * 3 + ["null", "drop"]))
        if choice == "keep":
            body[name] = canonical
        elif choice == "change":
            body[name] = draw(value_of.get(name, text))
        elif choice == "null":
            body[name] = None
    if draw(st.integers(0, 20)) == 0:
        body["extra"] = 1
    return msgspec.json.encode(body)


def assert_same(lean: LeanFill, model: Fill, data: bytes) -> None:
    present = json.loads(data).keys()
    for name in Fill.model_fields:
        ours, theirs = getattr(lean, name), getattr(model, name)
        if name not in present and name in ("event_id", "ts_init"):
            continue  # the model draws a new id / time of its own
        if isinstance(theirs, Decimal):
            assert type(ours) is JsonDecimal and str(ours) == str(theirs), name  # exact digits
        elif isinstance(theirs, datetime):
            assert ours == theirs and ours.utcoffset() == theirs.utcoffset(), name
        else:
            assert ours == theirs, name


def verdicts(data: bytes) -> tuple[Fill | Exception, LeanFill | Exception]:
    try:
        model: Fill | Exception = Fill.model_validate_json(data)
    except ValidationError as exc:
        model = exc
    try:
        lean: LeanFill | Exception = decode_fill(data)
    except ValidationError as exc:
        lean = exc
    return model, lean


def check(data: bytes) -> None:
    fast = fast_fill(data)
    model, lean = verdicts(data)
    if fast is not None:  # the fast path accepts only what the model accepts, with its values
        assert isinstance(model, Fill), f"fast path accepted what the model refuses: {model}"
        assert_same(fast, model, data)
    if isinstance(model, Fill):
        assert isinstance(lean, LeanFill)
        assert_same(lean, model, data)
    else:
        assert isinstance(lean, ValidationError) and str(lean) == str(model)  # the model's own words


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(bodies())
@example(CANONICAL.to_bytes())
@example(msgspec.json.encode({**BODY, "fill_px": msgspec.Raw(b"0.1000000000000000055511151231257827")}))
@example(msgspec.json.encode({**BODY, "fill_sz": "NaN"}))
@example(msgspec.json.encode({**BODY, "fill_fee": "0x10"}))
@example(msgspec.json.encode({**BODY, "lever": "\u0000"}))
@example(msgspec.json.encode({**BODY, "ts_event": "2026-01-01T00:00:00.9999999Z"}))
@example(msgspec.json.encode({**BODY, "fill_px": "0"}))
@example(msgspec.json.encode({**BODY, "trade_id": "x" * (ID_MAX_LENGTH + 1)}))
def test_the_lean_decoder_gives_the_models_verdict_and_values(data: bytes) -> None:
    check(data)


@FAST
@given(st.data())
def test_hostile_bytes_get_the_models_verdict(data: st.DataObject) -> None:
    valid = CANONICAL.to_bytes()
    mangled = data.draw(st.one_of(
        st.binary(max_size=64),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),  # truncated
        st.tuples(st.integers(0, len(valid) - 1), st.binary(min_size=1, max_size=3)).map(
            lambda p: valid[:p[0]] + p[1] + valid[p[0] + 1:]),  # bytes replaced
        st.sampled_from([valid + b" ", b" " + valid, valid.replace(b"{", b"{\"raw\":{},", 1),
                         valid.replace(b'"123"', b'"\\ud800"'), valid.replace(b'"123"', b'"\\u0000"'),
                         valid.replace(b'"123"', b'"12\\u0033"'), b"[" + valid + b"]", b"null"]),
    ))
    check(mangled)


def test_the_fast_path_takes_the_canonical_form_and_leaves_the_rest_to_the_model() -> None:
    assert fast_fill(CANONICAL.to_bytes()) == LeanFill.of(CANONICAL)
    for odd in ({"fill_px": msgspec.Raw(b"1.5")}, {"fill_sz": "Infinity"},
                {"ts_event": "2026-01-01T00:00:00.1234567Z"}, {"fill_sz": "-1"}, {"reduce_only": "true"}):
        assert fast_fill(msgspec.json.encode({**BODY, **odd})) is None, odd


INVALID = "schema-invalid fill: "


@pytest.mark.parametrize(("change", "reason"), [
    pytest.param({"fill_sz": "-1"}, INVALID + "fill_sz: Input should be greater than 0", id="bound"),
    pytest.param({"fill_px": "NaN"}, INVALID + "fill_px: Input should be a finite number", id="nan"),
    pytest.param({"side": "hold"}, INVALID + "side: Input should be 'buy' or 'sell'", id="vocabulary"),
    pytest.param({"trade_id": "1" * 65}, INVALID + "trade_id: String should have at most 64", id="long-id"),
    pytest.param({"bogus": 1}, INVALID + "bogus: Extra inputs are not permitted", id="extra"),
    pytest.param({"fill_px": "1e13"}, "fill_px 1E+13 does not fit its column", id="too-big"),
    pytest.param({"trade_id": "a\u0000"}, "fill holds NUL (U+0000)", id="nul"),
])
def test_a_refused_fill_is_a_permanent_error_with_the_models_reason(
    change: dict[str, Any], reason: str
) -> None:
    subject = f"t9.account.{ACCOUNT}.fill.BTC-USDT-SWAP"
    with pytest.raises(PermanentError) as refused:
        parse(0, subject, msgspec.json.encode({**BODY, **change}), "t9", lambda: CANONICAL.ts_event)
    assert str(refused.value).startswith(reason)


def test_an_odd_but_valid_fill_is_parsed_as_the_model_reads_it() -> None:
    # A JSON number for a price: pydantic reads it through a float, and so does the ledger still.
    subject = f"t9.account.{ACCOUNT}.fill.BTC-USDT-SWAP"
    data = msgspec.json.encode({**BODY, "fill_px": msgspec.Raw(b"0.1000000000000000055511151231257827")})
    event = parse(0, subject, data, "t9", lambda: CANONICAL.ts_event).event
    assert isinstance(event, LeanFill) and event.fill_px == Decimal("0.1")


def _default(field: msgspec.structs.FieldInfo) -> Any:
    if field.default_factory is not msgspec.NODEFAULT:
        return msgspec.field(default_factory=field.default_factory)
    return field.default


def test_a_lean_struct_that_drifts_from_the_model_is_refused_at_import() -> None:
    fields = [(f.name, f.type) if f.required else (f.name, f.type, _default(f))
              for f in msgspec.structs.fields(LeanFill)]
    _check_mirror(msgspec.defstruct("Same", fields), Fill)  # the real one passes
    drifts = {  # what the refusal says -> the drifted fields
        "vocabulary": [(n, Literal["buy"], *r) if n == "side" else (n, t, *r) for n, t, *r in fields],
        "default": [(n, t, "X") if n == "category" else (n, t, *rest) for n, t, *rest in fields],
        "fields differ": [f for f in fields if f[0] != "algo_id"],
    }
    for says, drifted in drifts.items():
        with pytest.raises(TypeError, match=says):
            _check_mirror(msgspec.defstruct("Drifted", drifted), Fill)
