"""The product's vocabulary: one definition of each closed set of words the services exchange.

Most are OKX's own words (`side`, `posSide`, `ordType`, `tdMode`, `posMode`); the others are
ours (`mode` of an account, why a position closed, what happened to it, a metrics window).
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["live", "simulated"]  # an account's money: real (OKX live) or demo trading
Side = Literal["buy", "sell"]
PosSide = Literal["net", "long", "short"]  # OKX position slot: net mode, or long/short mode
Direction = Literal["long", "short"]  # which way a position is exposed
PosMode = Literal["net_mode", "long_short_mode"]  # OKX account position mode
OrderType = Literal["market", "limit"]  # the order types the product places
TdMode = Literal["cross", "isolated"]  # OKX margin mode of an order
# take_profit / stop_loss: closed by a triggered algo order of the exit plan (docs/exit_plans.md).
ExitReason = Literal["agent", "liquidation", "adl", "external", "reconcile", "take_profit",
                     "stop_loss"]
# Reconciliation (docs/reconciliation.md): what differed, and how the difference ended.
DiscrepancyKind = Literal["position", "balance", "order", "fill", "algo"]
Resolution = Literal["backfill", "exchange_wins", "exchange_state", "refreshed", "vanished",
                     "canceled"]
# The fill category of a reconciliation entry (a labelled synthetic fill, not an OKX trade):
# a position it closes has exit_reason "reconcile".
RECONCILE_CATEGORY = "reconcile"
PositionEventKind = Literal["opened", "changed", "closed"]
Window = Literal["daily", "weekly", "all_time"]  # a performance metrics window
WsEndpoint = Literal["public", "private", "business"]  # OKX v5 websocket endpoints
# OKX algo (TP/SL) orders (docs/okx-algo-orders.md): the types we place and stream, their states,
# which price a trigger watches, and which leg fired.
AlgoOrdType = Literal["conditional", "oco"]
AlgoState = Literal["live", "effective", "canceled", "order_failed", "partially_effective",
                    "partially_failed"]
TriggerPxType = Literal["last", "mark", "index"]
AlgoLeg = Literal["tp", "sl"]
