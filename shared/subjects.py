"""NATS subjects and JetStream streams (DESIGN §4). The subject root and the stream-name
prefix are settings, so that tests (or two deployments) get isolated namespaces."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

STREAM_MARKET = "MARKET"
STREAM_ACCOUNT = "ACCOUNT"
STREAM_POSITIONS = "POSITIONS"


@dataclass(frozen=True)
class Subjects:
    """Builds every subject of the event contract."""

    root: str = "aitrader"
    stream_prefix: str = ""

    # market (stream MARKET, publisher: ingest)
    def candle(self, bar: str, inst_id: str) -> str:
        return f"{self.root}.market.candle.{bar}.{inst_id}"

    def ticker(self, inst_id: str) -> str:
        return f"{self.root}.market.ticker.{inst_id}"

    def mark_price(self, inst_id: str) -> str:
        return f"{self.root}.market.mark.{inst_id}"

    def funding_rate(self, inst_id: str) -> str:
        return f"{self.root}.market.funding.{inst_id}"

    def open_interest(self, inst_id: str) -> str:
        return f"{self.root}.market.oi.{inst_id}"

    # account (stream ACCOUNT, publisher: ingest)
    def order(self, account_id: UUID | str, inst_id: str) -> str:
        return f"{self.root}.account.{account_id}.order.{inst_id}"

    def fill(self, account_id: UUID | str, inst_id: str) -> str:
        return f"{self.root}.account.{account_id}.fill.{inst_id}"

    def balance(self, account_id: UUID | str) -> str:
        return f"{self.root}.account.{account_id}.balance"

    def exchange_position(self, account_id: UUID | str, inst_id: str) -> str:
        return f"{self.root}.account.{account_id}.position.{inst_id}"

    def funding_payment(self, account_id: UUID | str, inst_id: str) -> str:
        return f"{self.root}.account.{account_id}.funding.{inst_id}"

    # positions (stream POSITIONS, publisher: positions)
    def position(self, account_id: UUID | str, inst_id: str) -> str:
        return f"{self.root}.positions.{account_id}.{inst_id}"

    # commands (core NATS request/reply, not a stream)
    def place_order(self, account_id: UUID | str) -> str:
        return f"{self.root}.cmd.{account_id}.place_order"

    def market_data_refresh(self) -> str:
        """Request/reply: ask ingest to fetch fresh candles over REST (gateway fallback)."""
        return f"{self.root}.cmd.market.refresh"

    # dead letters (core NATS, also stored in aitrader.dead_letters)
    def dead_letter(self, service: str) -> str:
        return f"{self.root}.dlq.{service}"

    # wildcards
    @property
    def market_all(self) -> str:
        return f"{self.root}.market.>"

    @property
    def account_all(self) -> str:
        return f"{self.root}.account.>"

    @property
    def positions_all(self) -> str:
        return f"{self.root}.positions.>"

    def account_kind(self, kind: str, account_id: str = "*") -> str:
        """e.g. account_kind("fill") -> aitrader.account.*.fill.>"""
        tail = ">" if kind in ("order", "fill", "position", "funding") else ""
        return f"{self.root}.account.{account_id}.{kind}" + (f".{tail}" if tail else "")

    # streams
    def stream(self, name: str) -> str:
        return f"{self.stream_prefix}{name}"

    def stream_subjects(self) -> dict[str, list[str]]:
        return {
            self.stream(STREAM_MARKET): [self.market_all],
            self.stream(STREAM_ACCOUNT): [self.account_all],
            self.stream(STREAM_POSITIONS): [self.positions_all],
        }
