"""Server middleware in front of the tools: a caller sees only the tools its scope allows, and
arguments that do not fit a tool's input schema are refused in one line before the tool runs.

The SDK's own refusal of such arguments is pydantic's multi-line report (and names no valid
argument); this middleware validates with the tool's own argument model (the SDK's
`FuncMetadata.validate_arguments`, the same call the SDK makes next) and answers with
`arguments.refusal`. It runs inside `AuditMiddleware`, so the refused call is recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, ListToolsResult, TextContent
from mcp_types import Tool as ListedTool
from pydantic import ValidationError

from services.mcp_gateway.arguments import refusal
from services.mcp_gateway.auth import Principal


def needs_trade(tool: Tool) -> bool:
    """A tool that is not read-only needs the `trade` scope (its call refuses a read token)."""
    return not (tool.annotations is not None and tool.annotations.read_only_hint)


def tool_name(entry: object) -> str:
    """The name of one tools/list entry, a wire dict or a `Tool` model (anything else raises)."""
    if isinstance(entry, dict) and isinstance(entry.get("name"), str):
        return str(entry["name"])
    if isinstance(entry, ListedTool):
        return entry.name
    raise TypeError(f"a tools/list entry is {type(entry).__name__}, not a tool: cannot filter by scope")


class ToolGate:
    """Hides the trade tools from read-scope callers; refuses misfitting arguments in one line."""

    def __init__(self, tools: Iterable[Tool], principal: Callable[[], Principal | None]) -> None:
        self._tools = {t.name: t for t in tools}
        self._principal = principal

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/list":
            return self._visible(await call_next(ctx))
        if ctx.method == "tools/call":
            refused = self._check(ctx.params or {})
            if refused is not None:
                return CallToolResult(content=[TextContent(type="text", text=refused)], is_error=True)
        return await call_next(ctx)

    def _visible(self, result: HandlerResult) -> HandlerResult:
        """tools/list without the tools the caller's scope cannot call. The SDK's handler result
        reaches the middleware as the wire dict (its `cacheScope` is private: a cached list
        is never another caller's) or as a `ListToolsResult`; any other shape is an error, never
        the list unfiltered."""
        who = self._principal()
        if who is not None and who.can("trade"):
            return result
        hidden = {name for name, tool in self._tools.items() if needs_trade(tool)}
        if isinstance(result, ListToolsResult):
            return result.model_copy(update={"tools": [t for t in result.tools if t.name not in hidden]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            return {**result, "tools": [t for t in result["tools"] if tool_name(t) not in hidden]}
        raise TypeError(f"tools/list answered {type(result).__name__}, not a tool list: "
                        "cannot filter by scope")

    def _check(self, params: Mapping[str, Any]) -> str | None:
        tool = self._tools.get(str(params.get("name")))
        arguments = params.get("arguments")
        if tool is None or not isinstance(arguments, dict | None):
            return None  # the SDK answers an unknown tool or malformed params itself
        try:
            tool.fn_metadata.validate_arguments(arguments or {})
        except ValidationError as exc:
            return refusal(tool.name, tool.fn_metadata.arg_model, exc)
        return None
