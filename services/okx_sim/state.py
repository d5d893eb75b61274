"""The simulator's exchange state in one JSON file: read on start, written after every change.

Version 2 holds the simulated time it was written at, the market seed and its `set_price`
shifts, the next funding period, the next ordId/tradeId/billId/posId/algoId, and every account
(uid, cash, position mode, leverage, positions, orders open and closed, fills, bills, and its
TP/SL algo orders). A version 1 file (before algo orders) is read as having none: its orders
get empty `algo_id`/`algo_cl_ord_id`/`source`, and it is written back as version 2.
Decimals are strings, never floats. No secret is written: an account is stored by API key
alone and is served only while `--account`/the config supplies its secret and passphrase;
an account in the file that is not configured sleeps (kept, written back, not served).
The file is still created 0600: it is someone's trading history.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .models import Account, AlgoOrder, Bill, Fill, Order, Position

if TYPE_CHECKING:
    from .core import SimCore

VERSION = 2
READS = (1, 2)
Record = TypeVar("Record", Order, Fill, Position, Bill, AlgoOrder)
_ID_FIELDS = {"ord": "ord_id", "trade": "trade_id", "bill": "bill_id", "pos": "pos_id",
              "algo": "algo_id"}
# fields a version 1 file lacks, which it is read with their defaults
_NEW_IN_2: dict[type, frozenset[str]] = {
    Order: frozenset({"algo_id", "algo_cl_ord_id", "source"})}
_ALGO_ID_START = 600_000_000_000_000_001  # = Exchange.algo_ids' start


class StateError(Exception):
    """The state file cannot be used; the message is one line naming the file."""


class _Corrupt(ValueError):
    """A defect inside the document (the caller adds the file name)."""


@dataclass(frozen=True)
class Snapshot:
    """A state file's content, checked and decoded."""

    saved_at_ms: int
    seed: int
    funding_interval_ms: int
    funding_period: int
    ids: dict[str, int]
    offsets: dict[str, list[tuple[int, int]]]
    accounts: tuple[Account, ...]


# --- reading ----------------------------------------------------------------------------
def load(path: Path) -> Snapshot | None:
    """The snapshot in `path`, None if there is no file; StateError if it is unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateError(f"state file {path}: cannot read it ({err.strerror})") from None
    if not data.strip():
        raise StateError(f"state file {path}: empty (truncated?); move it away to start fresh")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise StateError(f"state file {path}: not valid JSON, truncated or corrupt ({err})"
                         ) from None
    if not isinstance(doc, dict) or "version" not in doc:
        raise StateError(f"state file {path}: no \"version\" field, not an okx-sim state file")
    if doc["version"] not in READS:
        raise StateError(f"state file {path}: version {doc['version']!r} is not supported "
                         f"(this okx-sim reads versions 1 and {VERSION})")
    try:
        return _snapshot(doc)
    except _Corrupt as err:
        raise StateError(f"state file {path}: {err}") from None


def _snapshot(doc: dict[str, Any]) -> Snapshot:
    version: int = doc["version"]
    ids = _obj(doc, "ids", "ids")
    if version == 1:
        ids = {**ids, "algo": _ALGO_ID_START}
    offsets = _obj(doc, "offsets", "offsets")
    raw_accounts = _list(doc, "accounts", "accounts")
    accounts = tuple(_account(a, f"accounts[{i}]", version)
                     for i, a in enumerate(raw_accounts))
    if len({a.api_key for a in accounts}) != len(accounts):
        raise _Corrupt("accounts: an API key appears twice")
    snap = Snapshot(
        _int(doc.get("saved_at_ms"), "saved_at_ms"), _int(doc.get("seed"), "seed"),
        _int(doc.get("funding_interval_ms"), "funding_interval_ms"),
        _int(doc.get("funding_period"), "funding_period"),
        {k: _int(ids.get(k), f"ids.{k}") for k in _ID_FIELDS},
        {sym: _shifts(v, f"offsets.{sym}") for sym, v in offsets.items()}, accounts)
    _check_ids(snap)
    return snap


def _check_ids(snap: Snapshot) -> None:
    """A next id at or below one already issued would repeat it: the file is not consistent."""
    for kind, attr in _ID_FIELDS.items():
        issued = [_id(getattr(r, attr), attr) for a in snap.accounts for r in (
            *a.orders.values(), *a.fills, *a.bills, *a.positions.values(), *a.algos.values())
            if getattr(r, attr, "")]
        if issued and snap.ids[kind] <= max(issued):
            raise _Corrupt(f"ids.{kind} {snap.ids[kind]} is not above the largest issued "
                           f"{attr} {max(issued)}")


def _id(text: str, attr: str) -> int:
    try:
        return abs(int(text))  # liquidation tradeIds are negative
    except ValueError:
        raise _Corrupt(f"{attr} {text!r} is not numeric") from None


def _account(raw: Any, where: str, version: int) -> Account:
    if not isinstance(raw, dict):
        raise _Corrupt(f"{where}: not an object")
    pos_mode = _str(raw.get("pos_mode"), f"{where}.pos_mode")
    if pos_mode not in ("net_mode", "long_short_mode"):
        raise _Corrupt(f"{where}.pos_mode: {pos_mode!r} is not net_mode or long_short_mode")
    levers = _obj(raw, "levers", f"{where}.levers")
    positions = [_record(Position, p, f"{where}.positions[{i}]")
                 for i, p in enumerate(_list(raw, "positions", f"{where}.positions"))]
    orders = [_record(Order, o, f"{where}.orders[{i}]", version)
              for i, o in enumerate(_list(raw, "orders", f"{where}.orders"))]
    algos = [] if version == 1 else [
        _record(AlgoOrder, a, f"{where}.algos[{i}]")
        for i, a in enumerate(_list(raw, "algos", f"{where}.algos"))]
    return Account(
        _str(raw.get("api_key"), f"{where}.api_key"), _str(raw.get("uid"), f"{where}.uid"),
        _decimal(raw.get("cash"), f"{where}.cash"), pos_mode,
        {k: _int(v, f"{where}.levers.{k}") for k, v in levers.items()},
        {(p.inst_id, p.pos_side): p for p in positions}, {o.ord_id: o for o in orders},
        [_record(Fill, f, f"{where}.fills[{i}]")
         for i, f in enumerate(_list(raw, "fills", f"{where}.fills"))],
        [_record(Bill, b, f"{where}.bills[{i}]")
         for i, b in enumerate(_list(raw, "bills", f"{where}.bills"))],
        _int(raw.get("u_time"), f"{where}.u_time"), {a.algo_id: a for a in algos})


def _record(cls: type[Record], raw: Any, where: str, version: int = VERSION) -> Record:
    if not isinstance(raw, dict):
        raise _Corrupt(f"{where}: not an object")
    names = {f.name for f in fields(cls)}
    if extra := sorted(raw.keys() - names):
        raise _Corrupt(f"{where}: unknown field {extra[0]!r}")
    optional = _NEW_IN_2.get(cls, frozenset()) if version == 1 else frozenset()
    if missing := sorted(names - raw.keys() - optional):
        raise _Corrupt(f"{where}: missing field {missing[0]!r}")
    return cls(**{f.name: _value(str(f.type), raw[f.name], f"{where}.{f.name}")
                  for f in fields(cls) if f.name in raw})


def _value(kind: str, raw: Any, where: str) -> Any:
    if kind == "Decimal | None":
        return None if raw is None else _decimal(raw, where)
    if kind == "Decimal":
        return _decimal(raw, where)
    if kind == "int":
        return _int(raw, where)
    if kind == "bool":
        if not isinstance(raw, bool):
            raise _Corrupt(f"{where}: {raw!r} is not true/false")
        return raw
    return _str(raw, where)


def _decimal(raw: Any, where: str) -> Decimal:
    if not isinstance(raw, str):
        raise _Corrupt(f"{where}: {raw!r} is not a decimal string")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _Corrupt(f"{where}: {raw!r} is not a decimal string") from None
    if not value.is_finite():
        raise _Corrupt(f"{where}: {raw!r} is not a finite decimal")
    return value


def _int(raw: Any, where: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise _Corrupt(f"{where}: {raw!r} is not an integer")
    return raw


def _str(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise _Corrupt(f"{where}: {raw!r} is not a string")
    return raw


def _obj(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise _Corrupt(f"{where}: missing or not an object")
    return value


def _list(doc: dict[str, Any], key: str, where: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise _Corrupt(f"{where}: missing or not a list")
    return value


def _shifts(raw: Any, where: str) -> list[tuple[int, int]]:
    if not isinstance(raw, list) or not all(isinstance(s, list) and len(s) == 2 for s in raw):
        raise _Corrupt(f"{where}: not a list of [step, ticks]")
    shifts = [(_int(s, where), _int(t, where)) for s, t in raw]
    if any(a[0] >= b[0] for a, b in itertools.pairwise(shifts)):
        raise _Corrupt(f"{where}: steps are not increasing")
    return shifts


# --- writing ----------------------------------------------------------------------------
class Encoder:
    """Serializes a core's state. Fills and bills only ever get appended and closed orders
    never change, so each is encoded once and its text reused: a save then costs little
    more than joining the texts (measured in docs/okx_sim.md)."""

    def __init__(self) -> None:
        self._appended: dict[tuple[str, str], tuple[int, str]] = {}  # -> (records, text)
        self._closed: dict[str, str] = {}  # ordId -> JSON text of a closed order

    def encode(self, core: SimCore) -> str:
        """The whole state file content (ASCII JSON)."""
        ex = core.exchange
        head = _dumps({
            "version": VERSION, "saved_at_ms": core.now(), "seed": core.config.seed,
            "funding_interval_ms": core.market.funding_interval_ms,
            "funding_period": core.funding_period,
            "ids": {"ord": ex.ord_ids.next, "trade": ex.trade_ids.next,
                    "bill": ex.bill_ids.next, "pos": ex.pos_ids.next,
                    "algo": ex.algo_ids.next},
            "offsets": core.market.offsets})
        accounts = ",".join(self._account(a) for a in (*ex.accounts.values(),
                                                        *ex.dormant.values()))
        return f'{head[:-1]},"accounts":[{accounts}]}}'

    def _account(self, acct: Account) -> str:
        head = _dumps({
            "api_key": acct.api_key, "uid": acct.uid, "cash": str(acct.cash),
            "pos_mode": acct.pos_mode, "u_time": acct.u_time, "levers": acct.levers,
            "positions": [_plain(p) for p in acct.positions.values()]})
        orders = ",".join(self._order(o) for o in acct.orders.values())
        fills = self._joined(acct.api_key, "fills", acct.fills)
        bills = self._joined(acct.api_key, "bills", acct.bills)
        algos = ",".join(_dumps(_plain(a)) for a in acct.algos.values())
        return (f'{head[:-1]},"orders":[{orders}],"fills":[{fills}],"bills":[{bills}],'
                f'"algos":[{algos}]}}')

    def _order(self, order: Order) -> str:
        if order.is_open:
            return _dumps(_plain(order))
        text = self._closed.get(order.ord_id)
        if text is None:
            text = self._closed[order.ord_id] = _dumps(_plain(order))
        return text

    def _joined(self, api_key: str, kind: str, records: list[Fill] | list[Bill]) -> str:
        count, text = self._appended.get((api_key, kind), (0, ""))
        if count > len(records):  # not append-only after all: start over
            count, text = 0, ""
        if count < len(records):
            new = ",".join(_dumps(_plain(r)) for r in records[count:])
            text = f"{text},{new}" if text else new
            self._appended[(api_key, kind)] = (len(records), text)
        return text


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _plain(record: Order | Fill | Bill | Position | AlgoOrder) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(record, f.name)) for f in fields(record)}


def _jsonable(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value


# --- applying ---------------------------------------------------------------------------
def restore(core: SimCore, snap: Snapshot, path: Path) -> None:
    """Put a snapshot into a new core: accounts, ids, market shifts, clock, funding period."""
    if snap.seed != core.config.seed:
        raise StateError(f"state file {path}: written with seed {snap.seed}, not "
                         f"{core.config.seed}; the market would jump (start with that seed)")
    ex, configured = core.exchange, {a.api_key for a in core.config.accounts}
    for acct in snap.accounts:
        (ex.accounts if acct.api_key in configured else ex.dormant)[acct.api_key] = acct
        _check_listed(acct, core, path)
    for kind, seq in (("ord", ex.ord_ids), ("trade", ex.trade_ids), ("bill", ex.bill_ids),
                      ("pos", ex.pos_ids), ("algo", ex.algo_ids)):
        seq.next = max(seq.next, snap.ids[kind])
    core.market.offsets.update(snap.offsets)  # an unlisted symbol's are kept for later
    core.clock.resume_after(snap.saved_at_ms)
    interval = core.market.funding_interval_ms
    if snap.funding_interval_ms == interval:
        core.funding_period = snap.funding_period  # missed settlements happen on the next tick
    else:  # periods of another length cannot be matched up: settle from now on
        core.funding_period = core.clock.now() // interval


def _check_listed(acct: Account, core: SimCore, path: Path) -> None:
    held = {p.inst_id for p in acct.open_positions()}
    held |= {o.inst_id for o in acct.orders.values() if o.is_open}
    held |= {a.inst_id for a in acct.algos.values() if a.state in ("live", "attached")}
    if acct.api_key in core.exchange.accounts and (missing := sorted(held - set(core.specs))):
        raise StateError(f"state file {path}: account {acct.api_key} holds positions or open "
                         f"orders in {', '.join(missing)}, which is not listed (add it to "
                         f"--symbols)")
