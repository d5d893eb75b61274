"""The scope filter of tools/list, whatever shape the SDK hands the middleware: a read-scope
caller never sees a trade tool, and a shape the gate cannot filter is an error, never the list."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast
from uuid import uuid4

import pytest
from mcp.server.mcpserver.tools import Tool
from mcp_types import ListToolsResult, ToolAnnotations
from mcp_types import Tool as ListedTool

from services.mcp_gateway.auth import Principal
from services.mcp_gateway.gate import ToolGate


def get_positions() -> str:
    """A read tool."""
    return "positions"


def execute_trade() -> str:
    """A trade tool."""
    return "traded"


TOOLS = [
    Tool.from_function(get_positions, annotations=ToolAnnotations(read_only_hint=True)),
    Tool.from_function(execute_trade),
]


def principal(*scopes: str) -> Principal:
    return Principal(uuid4(), "acct", "simulated", frozenset(scopes))


async def listed(who: Principal, answer: object) -> object:
    """What the gate hands on for tools/list when the SDK's handler answered `answer`."""
    gate = ToolGate(TOOLS, lambda: who)

    async def call_next(ctx: Any) -> Any:
        return answer

    return await gate(cast(Any, SimpleNamespace(method="tools/list", params=None)), call_next)


def as_model() -> ListToolsResult:
    return ListToolsResult(tools=[ListedTool(name=t.name, input_schema=t.parameters) for t in TOOLS])


def as_dict() -> dict[str, Any]:
    return as_model().model_dump(by_alias=True, mode="json", exclude_none=True)


async def test_a_read_token_sees_only_read_tools_in_the_wire_dict() -> None:
    shown = await listed(principal("read"), as_dict())
    assert isinstance(shown, dict)
    assert [t["name"] for t in shown["tools"]] == ["get_positions"]


async def test_a_read_token_sees_only_read_tools_in_the_model() -> None:
    shown = await listed(principal("read"), as_model())
    assert isinstance(shown, ListToolsResult)
    assert [t.name for t in shown.tools] == ["get_positions"]


@pytest.mark.parametrize("answer", [as_model(), as_dict()], ids=["model", "dict"])
async def test_a_trade_token_sees_every_tool(answer: object) -> None:
    assert await listed(principal("read", "trade"), answer) is answer


@pytest.mark.parametrize(
    "answer",
    [None, {"tools": "all"}, {"tools": [object()]}, {"nothing": []}],
    ids=["none", "str", "entry", "key"],
)
async def test_a_shape_the_gate_cannot_filter_is_an_error_not_the_list(answer: object) -> None:
    with pytest.raises(TypeError, match="cannot filter by scope"):
        await listed(principal("read"), answer)
