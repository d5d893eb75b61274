"""Failures the model reads: each says what was wrong and what is allowed or what to do.

Plain exceptions, free of the MCP SDK: the tool boundary (`tools._refusals_as_tool_errors`)
turns a `Refusal` into the SDK's `ToolError`, so the call returns `is_error=True` with this text
(any other exception reaches the model only as "Error executing tool <name>").
"""

from __future__ import annotations


class Refusal(Exception):
    """A call the gateway refuses, with the text the model reads."""


class InvalidArgument(Refusal):
    """An argument the gateway refuses; nothing was written to orders."""


class NotAllowed(Refusal):
    """The caller's token lacks the scope this tool needs."""


class TradeNotPlaced(Refusal):
    """The order row exists but the exchange did not take it (rejected, unavailable, unknown)."""


class ExitOrdersRefused(Refusal):
    """OKX refused the new exit plan's orders: the position keeps its previous plan."""
