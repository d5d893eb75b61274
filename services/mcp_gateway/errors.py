"""Failures the model reads: each says what was wrong and what is allowed or what to do.

They subclass the SDK's `ToolError`, so the call returns `is_error=True` with this text
(any other exception reaches the model only as "Error executing tool <name>").
"""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError


class InvalidArgument(ToolError):
    """An argument the gateway refuses; nothing was written to orders."""


class NotAllowed(ToolError):
    """The caller's token lacks the scope this tool needs."""


class TradeNotPlaced(ToolError):
    """The order row exists but the exchange did not take it (rejected, unavailable, unknown)."""
