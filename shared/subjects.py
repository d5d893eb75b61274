"""NATS subjects and JetStream streams (DESIGN §4): one table, `ROUTES`.

A route is a kind of message: the stream that keeps it (None: core NATS), its model, the
subject template after the root (`{name}` marks a variable token, named as the model's field)
and the description the AsyncAPI document shows. Everything else is read from the table:
building (`Subjects.build` and its named helpers), parsing (`Subjects.parse`), the kind -> model
map (`models_of`), the stream subject filters (`shared.bus.ensure_streams`) and the contract
(`shared.contract`). The subject root and the stream-name prefix are settings, so that tests
(or two deployments) get isolated namespaces.

Partitions (`PARTITIONED`): the ACCOUNT stream stores each message under its subject with one
more token, the partition, right after the stream's token: a message published on
`<root>.account.<account_id>.fill.<instId>` is stored as `<root>.account.<p>.<account_id>.fill.<instId>`,
p = `partition_of(account_id, count)`. The server computes it (a stream subject transform,
`{{partition(count,1)}}`, nats-server >= 2.10), so publishers and core-NATS subscribers see
only the published form; a JetStream consumer of the stream sees the stored form
(`Subjects.published` strips the token, `Subjects.stored_filter` adds a wildcard for it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import NamedTuple, TypeVar
from uuid import UUID

from pydantic import BaseModel

from shared import messages as m
from shared.errors import PermanentError

STREAM_MARKET = "MARKET"
STREAM_ACCOUNT = "ACCOUNT"
STREAM_POSITIONS = "POSITIONS"
STREAM_RECONCILE = "RECONCILE"
# The streams whose stored subjects carry a partition token, and the route token it hashes
# (at the position right after the stream's token in every route of the stream).
PARTITIONED: Mapping[str, str] = MappingProxyType({STREAM_ACCOUNT: "account_id"})
DEFAULT_PARTITIONS = 4
MAX_PARTITIONS = 64

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the subject table; `tokens` are the names of the variable tokens, in order."""

    kind: str
    stream: str | None
    model: type[BaseModel] | None
    template: str
    description: str
    parts: tuple[str, ...] = field(init=False, repr=False)
    tokens: tuple[str, ...] = field(init=False, repr=False)
    positions: tuple[int, ...] = field(init=False, repr=False)  # where the tokens are in `parts`

    def __post_init__(self) -> None:
        parts = tuple(self.template.split("."))
        variable = [i for i, p in enumerate(parts) if p.startswith("{") and p.endswith("}")]
        for i, part in enumerate(parts):
            if not part or (i not in variable and any(c in part for c in "{}*> ")):
                raise ValueError(f"route {self.kind}: bad token {part!r} in {self.template!r}")
        if 0 in variable:
            raise ValueError(f"route {self.kind}: the first token must be a literal")
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "tokens", tuple(parts[i][1:-1] for i in variable))
        object.__setattr__(self, "positions", tuple(variable))


ACC, INST = "{account_id}", "{inst_id}"
ROUTES: tuple[Route, ...] = (
    Route("candle", STREAM_MARKET, m.Candle, f"market.candle.{{bar}}.{INST}",
          "Candle update from ingest; `confirmed` is true once the bar is closed. "
          "Nats-Msg-Id: candle:<instId>:<bar>:<open ms>:<0|1>."),
    Route("ticker", STREAM_MARKET, m.Ticker, f"market.ticker.{INST}",
          "Latest trade price and best bid/ask."),
    Route("mark_price", STREAM_MARKET, m.MarkPrice, f"market.mark.{INST}",
          "Mark price (unrealized PnL, liquidation)."),
    Route("funding_rate", STREAM_MARKET, m.FundingRate, f"market.funding.{INST}",
          "Current funding rate."),
    Route("open_interest", STREAM_MARKET, m.OpenInterest, f"market.oi.{INST}",
          "Open interest in contracts."),
    Route("order", STREAM_ACCOUNT, m.OrderUpdate, f"account.{ACC}.order.{INST}",
          "Order state change."),
    Route("fill", STREAM_ACCOUNT, m.Fill, f"account.{ACC}.fill.{INST}",
          "One fill: the ledger's input. Nats-Msg-Id: fill:<account_id>:<instId>:<tradeId>."),
    Route("balance", STREAM_ACCOUNT, m.Balance, f"account.{ACC}.balance",
          "USDT balance (exchange view)."),
    Route("exchange_position", STREAM_ACCOUNT, m.ExchangePosition, f"account.{ACC}.position.{INST}",
          "The exchange's view of a position (margin, liquidation price, mark), for reconciliation."),
    Route("funding_payment", STREAM_ACCOUNT, m.FundingPayment, f"account.{ACC}.funding.{INST}",
          "Funding fee settled on a position. Nats-Msg-Id: funding:<account_id>:<billId>."),
    Route("algo_order", STREAM_ACCOUNT, m.AlgoOrderUpdate, f"account.{ACC}.algo.{INST}",
          "Algo (TP/SL) order state change (orders-algo push or REST backfill). Nats-Msg-Id: "
          "algo:<account_id>:<algoId>:<uTime ms>:<state>[:<reqId> after an amendment]."),
    Route("position", STREAM_POSITIONS, m.PositionEvent, f"positions.{ACC}.{INST}",
          "Published by the positions service after commit: opened / changed / closed."),
    Route("discrepancy", STREAM_RECONCILE, m.Discrepancy, f"reconcile.{ACC}",
          "Published by ingest's reconciliation: a difference between the exchange and the "
          "ledger (status open) or its end (resolved, with how). Nats-Msg-Id: "
          "reconcile:<issue_id>:<status>."),
    # Commands: core NATS request/reply, no stream; the model is the request.
    Route("place_order", None, m.PlaceOrder, f"cmd.{ACC}.place_order",
          "Request/reply (core NATS): place an order on OKX. The reply is PlaceOrderReply: "
          "OKX's order id, or OKX's rejection (sCode, sMsg), or 'timeout'."),
    Route("place_algo", None, m.PlaceAlgo, f"cmd.{ACC}.place_algo",
          "Request/reply (core NATS): place an algo (TP/SL) order on OKX. The reply is "
          "AlgoReply: OKX's algoId, or OKX's refusal (sCode, sMsg), or 'timeout'."),
    Route("amend_algo", None, m.AmendAlgo, f"cmd.{ACC}.amend_algo",
          "Request/reply (core NATS): amend a live algo order on OKX. The reply is AlgoReply."),
    Route("cancel_algo", None, m.CancelAlgo, f"cmd.{ACC}.cancel_algo",
          "Request/reply (core NATS): cancel a live algo order on OKX. The reply is AlgoReply."),
    Route("market_data_refresh", None, m.MarketDataRefresh, "cmd.market.refresh",
          "Request/reply (core NATS): ingest fetches the latest closed candles over REST and "
          "publishes them as confirmed candles."),
    # Core NATS notice of a message that can never be processed (the record is the
    # aitrader.dead_letters row): the message's exact bytes, headers service, subject, stream,
    # stream-seq, error-type, reason (shared.consumer.DeadLetters.announce); no model.
    Route("dead_letter", None, None, "dlq.{service}",
          "A message that can never be processed, with its reason (also in aitrader.dead_letters)."),
    # Core NATS roll call of the positions instances (services.positions.balance): a request
    # with an empty body, every live instance answers with an empty reply; no model.
    Route("positions_instances", None, None, "svc.positions.instances",
          "Request, many replies (core NATS): each live positions instance answers."),
)
ROUTE: dict[str, Route] = {r.kind: r for r in ROUTES}
_OF_MODEL: dict[type[BaseModel], Route] = {r.model: r for r in ROUTES if r.model is not None}
if len(ROUTE) != len(ROUTES) or len(_OF_MODEL) != sum(r.model is not None for r in ROUTES):
    raise ValueError("every route needs its own kind and its own model")


def _stream_tokens() -> dict[str, str]:
    """Each stream's first subject token (it keeps `<root>.<token>.>`)."""
    tokens: dict[str, set[str]] = {}
    for route in ROUTES:
        if route.stream is not None:
            tokens.setdefault(route.stream, set()).add(route.parts[0])
    if any(len(t) != 1 for t in tokens.values()):
        raise ValueError(f"a stream's routes must share their first token: {tokens}")
    return {stream: t.pop() for stream, t in tokens.items()}


_STREAM_TOKEN = _stream_tokens()
STREAMS: tuple[str, ...] = tuple(_STREAM_TOKEN)
for _stream, _token in PARTITIONED.items():
    if any(r.stream == _stream and r.parts[1] != f"{{{_token}}}" for r in ROUTES):
        raise ValueError(f"every route of {_stream} needs {{{_token}}} as its second token")


def check_partitions(count: int) -> int:
    """`count` if it is a valid partition count, else ValueError."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partition count {count} is not within 1..{MAX_PARTITIONS}")
    return count


def partition_of(key: str, count: int) -> int:
    """The partition nats-server's `partition(count, ...)` gives a token: FNV-1a (32 bits) of
    its bytes, modulo `count` (a test checks it against the server)."""
    check_partitions(count)
    digest = 0x811C9DC5
    for byte in key.encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return digest % count


def models_of(stream: str, base: type[M]) -> dict[str, type[M]]:
    """The kind -> model map of a stream's routes, every model checked to be a `base`."""
    models: dict[str, type[M]] = {}
    for route in ROUTES:
        if route.stream == stream:
            if route.model is None or not issubclass(route.model, base):
                raise TypeError(f"route {route.kind}: {route.model} is not a {base.__name__}")
            models[route.kind] = route.model
    return models


class SubjectError(PermanentError):
    """A subject that matches no route of the table (a message on it can never be read)."""


class Parsed(NamedTuple):
    """A subject read back: its route and the values of its variable tokens, by name."""

    route: Route
    tokens: Mapping[str, str]  # read-only: parses are cached and shared


_NOT_A_VALUE = frozenset(("", "*", ">"))


def _matches(route: Route, parts: list[str]) -> bool:
    """The subject's tokens (after the root) fit the route: same count, same literals."""
    return len(parts) == len(route.parts) and all(
        i in route.positions or literal == parts[i] for i, literal in enumerate(route.parts))


def _overlap(a: Route, b: Route) -> bool:
    """True when one subject could match both routes."""
    return len(a.parts) == len(b.parts) and all(
        x == y or i in a.positions or i in b.positions
        for i, (x, y) in enumerate(zip(a.parts, b.parts, strict=True))
    )


for _i, _a in enumerate(ROUTES):
    for _b in ROUTES[_i + 1:]:
        if _overlap(_a, _b):
            raise ValueError(f"routes {_a.kind} and {_b.kind} match the same subjects")


# Per message on the ingest -> fold path, and a consumer sees few distinct subjects (accounts x
# instruments x kinds): the cache makes a parse one lookup. A refused subject is not cached.
@lru_cache(maxsize=4096)
def _parse(root: str, subject: str) -> Parsed:
    prefix = root + "."
    if not subject.startswith(prefix):
        raise SubjectError(f"subject {subject!r} is not under the root {root!r}")
    parts = subject[len(prefix):].split(".")
    for route in ROUTES:
        if _matches(route, parts):
            values = [parts[i] for i in route.positions]
            if not _NOT_A_VALUE.isdisjoint(values):
                raise SubjectError(f"empty or wildcard token in subject {subject!r}")
            return Parsed(route, MappingProxyType(dict(zip(route.tokens, values, strict=True))))
    raise SubjectError(f"no route matches subject {subject!r}")


@dataclass(frozen=True)
class Subjects:
    """The subjects of one namespace (root) and its stream names (prefix), from `ROUTES`."""

    root: str = "aitrader"
    stream_prefix: str = ""

    @cached_property
    def _formats(self) -> dict[str, Callable[..., str]]:
        """Per kind, `str.format` of the subject with positional fields in token order."""
        root = self.root.replace("{", "{{").replace("}", "}}")
        formats = {}
        for r in ROUTES:
            parts = list(r.parts)
            for n, i in enumerate(r.positions):
                parts[i] = f"{{{n}}}"
            formats[r.kind] = ".".join([root, *parts]).format
        return formats

    def build(self, kind: str, **tokens: object) -> str:
        """The subject of `kind` with these token values (`*` makes a filter)."""
        names = ROUTE[kind].tokens
        if tokens.keys() != set(names):
            raise TypeError(f"subject {kind} takes the tokens {names}, not {tuple(tokens)}")
        return self._formats[kind](*[tokens[t] for t in names])

    def for_event(self, event: BaseModel) -> str:
        """The subject an event (or command) is published on, its tokens read from its fields."""
        route = _OF_MODEL.get(type(event))
        if route is None:
            raise TypeError(f"no subject for {type(event).__name__}")
        return self._formats[route.kind](*[getattr(event, t) for t in route.tokens])

    def filter(self, kind: str, **tokens: object) -> str:
        """A subscription filter for `kind`: the tokens not given are `*`."""
        return self.build(kind, **(dict.fromkeys(ROUTE[kind].tokens, "*") | tokens))

    def pattern(self, kind: str) -> str:
        """The subject with `{name}` placeholders, as the contract documents it."""
        return f"{self.root}.{ROUTE[kind].template}"

    def parse(self, subject: str) -> Parsed:
        """The route and token values of a subject; `SubjectError` when no route matches."""
        return _parse(self.root, subject)

    # Named builders, one per route: the arguments are its tokens in order (a test checks).
    # market (stream MARKET, publisher: ingest)
    def candle(self, bar: str, inst_id: str) -> str:
        return self._formats["candle"](bar, inst_id)

    def ticker(self, inst_id: str) -> str:
        return self._formats["ticker"](inst_id)

    def mark_price(self, inst_id: str) -> str:
        return self._formats["mark_price"](inst_id)

    def funding_rate(self, inst_id: str) -> str:
        return self._formats["funding_rate"](inst_id)

    def open_interest(self, inst_id: str) -> str:
        return self._formats["open_interest"](inst_id)

    # account (stream ACCOUNT, publisher: ingest)
    def order(self, account_id: UUID | str, inst_id: str) -> str:
        return self._formats["order"](account_id, inst_id)

    def fill(self, account_id: UUID | str, inst_id: str) -> str:
        return self._formats["fill"](account_id, inst_id)

    def balance(self, account_id: UUID | str) -> str:
        return self._formats["balance"](account_id)

    def exchange_position(self, account_id: UUID | str, inst_id: str) -> str:
        return self._formats["exchange_position"](account_id, inst_id)

    def funding_payment(self, account_id: UUID | str, inst_id: str) -> str:
        return self._formats["funding_payment"](account_id, inst_id)

    def algo_order(self, account_id: UUID | str, inst_id: str) -> str:
        return self._formats["algo_order"](account_id, inst_id)

    # positions (stream POSITIONS, publisher: positions)
    def position(self, account_id: UUID | str, inst_id: str) -> str:
        return self._formats["position"](account_id, inst_id)

    # reconciliation (stream RECONCILE, publisher: ingest)
    def discrepancy(self, account_id: UUID | str) -> str:
        return self._formats["discrepancy"](account_id)

    # commands (core NATS request/reply, not a stream)
    def place_order(self, account_id: UUID | str) -> str:
        return self._formats["place_order"](account_id)

    def place_algo(self, account_id: UUID | str) -> str:
        return self._formats["place_algo"](account_id)

    def amend_algo(self, account_id: UUID | str) -> str:
        return self._formats["amend_algo"](account_id)

    def cancel_algo(self, account_id: UUID | str) -> str:
        return self._formats["cancel_algo"](account_id)

    def market_data_refresh(self) -> str:
        """Request/reply: ask ingest to fetch fresh candles over REST (gateway fallback)."""
        return self._formats["market_data_refresh"]()

    # dead letters (core NATS, also stored in aitrader.dead_letters)
    def dead_letter(self, service: str) -> str:
        return self._formats["dead_letter"](service)

    # the positions instances' roll call (core NATS)
    def positions_instances(self) -> str:
        return self._formats["positions_instances"]()

    # wildcards and streams
    def stream_filter(self, stream: str) -> str:
        """Every subject a stream keeps, e.g. `aitrader.account.>`."""
        return f"{self.root}.{_STREAM_TOKEN[stream]}.>"

    @property
    def account_all(self) -> str:
        return self.stream_filter(STREAM_ACCOUNT)

    @property
    def positions_all(self) -> str:
        return self.stream_filter(STREAM_POSITIONS)

    @property
    def everything(self) -> str:
        """Every subject of this namespace."""
        return f"{self.root}.>"

    def stream(self, name: str) -> str:
        return f"{self.stream_prefix}{name}"

    def stream_subjects(self) -> dict[str, list[str]]:
        return {self.stream(s): [self.stream_filter(s)] for s in STREAMS}

    # partitions (the stored form of a partitioned stream's subjects, see the module docstring)
    def partition_transform(self, stream: str, count: int) -> tuple[str, str] | None:
        """(source, destination) of the stream's subject transform; None: not partitioned."""
        if stream not in PARTITIONED:
            return None
        check_partitions(count)
        head = f"{self.root}.{_STREAM_TOKEN[stream]}"
        return f"{head}.*.>", f"{head}.{{{{partition({count},1)}}}}.{{{{wildcard(1)}}}}.>"

    def partition_filter(self, stream: str, partition: int) -> str:
        """Every stored subject of one partition of a partitioned stream."""
        if stream not in PARTITIONED or partition < 0:
            raise ValueError(f"no partition {partition} of stream {stream}")
        return f"{self.root}.{_STREAM_TOKEN[stream]}.{partition}.>"

    def stored_filter(self, subject: str) -> str:
        """A subject (or filter) of a partitioned stream in its published form -> the filter
        of its stored form, any partition (`a.account.X.fill.*` -> `a.account.*.X.fill.*`)."""
        head, rest = self._partitioned_head(subject)
        return f"{head}.*.{rest}"

    def published(self, subject: str) -> str:
        """A stored subject of a partitioned stream -> the subject it was published on;
        `SubjectError` when it carries no partition token."""
        head, rest = self._partitioned_head(subject)
        partition, _, tail = rest.partition(".")
        if not partition.isdigit() or not tail:
            raise SubjectError(f"subject {subject!r} has no partition token")
        return f"{head}.{tail}"

    def _partitioned_head(self, subject: str) -> tuple[str, str]:
        for stream in PARTITIONED:
            head = f"{self.root}.{_STREAM_TOKEN[stream]}"
            if subject.startswith(head + "."):
                return head, subject[len(head) + 1:]
        raise SubjectError(f"subject {subject!r} is not on a partitioned stream")
