"""The gateway's output contract is its view models: the published output schemas, the SQL
aliases and the document keys all come from them, and the documents are validated against the
schema in the tests (by the SDK client), not again by the server on every call."""

from __future__ import annotations

from typing import Annotated, Any, cast

import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from services.mcp_gateway import views
from services.mcp_gateway.gateway import Gateway
from services.mcp_gateway.projection import Projection
from services.mcp_gateway.tools import _tool, gateway_tools
from tests.mcp_gateway.conftest import TOOL_VIEWS


def _derived_schema(view: type[BaseModel]) -> dict[str, Any] | None:
    """The output schema the SDK derives for a tool returning `view`."""

    async def returns() -> None:
        raise NotImplementedError

    returns.__annotations__["return"] = Annotated[CallToolResult, view]
    return Tool.from_function(returns).output_schema


def test_every_tool_publishes_its_views_schema_and_leaves_validation_to_the_client() -> None:
    tools = {t.name: t for t in gateway_tools(cast(Gateway, None))}  # nothing is called
    assert set(tools) == set(TOOL_VIEWS)
    for name, tool in tools.items():
        assert tool.output_schema == _derived_schema(TOOL_VIEWS[name]), name
        assert tool.fn_metadata.output_model is None, name  # advertised, not validated per call


async def test_a_document_that_breaks_the_schema_reaches_the_client_and_is_refused_there() -> None:
    """The server passes a result on as the tool built it; the SDK client checks it against the
    published schema (so every `conftest.call` validates the gateway's documents)."""

    async def get_market_data() -> Annotated[CallToolResult, views.MarketData]:
        """A market data document without its series."""
        doc = {"symbol": "BTC", "funding_rate": None, "open_interest": None, "as_of": None, "stale": True}
        return CallToolResult(content=[TextContent(type="text", text="{}")], structured_content=doc)

    server = MCPServer("contract", tools=[_tool(get_market_data, ToolAnnotations(read_only_hint=True))])
    async with Client(server) as client:
        with pytest.raises(RuntimeError, match="Invalid structured content returned by tool get_market_data"):
            await client.call_tool("get_market_data", {})


def test_a_projection_must_account_for_every_field_of_its_view() -> None:
    columns = {name: "NULL" for name in views.Candle.model_fields}
    Projection(views.Candle, columns)  # complete: fine
    with pytest.raises(TypeError, match=r"not accounted for \['rsi14'\]"):
        Projection(views.Candle, {k: v for k, v in columns.items() if k != "rsi14"})
    with pytest.raises(TypeError, match=r"no such field \['close'\]"):
        Projection(views.Candle, {**columns, "close": "s.price"})
    with pytest.raises(TypeError, match=r"both column and filled \['price'\]"):
        Projection(views.Candle, columns, filled=["price"])


def test_a_projection_selects_and_reads_by_the_views_field_names() -> None:
    candle = Projection(
        views.Candle,
        {name: f"s.{name}" for name in views.Candle.model_fields if name != "price"},
        filled=["price"],
        extra={"timeframe": "t.tf"},
        prefix="c_",
    )
    assert candle.select().startswith('s.as_of AS "c_as_of", s.ema20 AS "c_ema20"')
    assert candle.select().endswith('t.tf AS "timeframe"')
    row = {f"c_{name}": name.upper() for name in views.Candle.model_fields}
    doc = candle.doc(row)
    assert list(doc) == list(views.Candle.model_fields)  # the model's key order
    assert doc == {name: None if name == "price" else name.upper() for name in views.Candle.model_fields}
    assert candle.column("rsi7") == "c_rsi7"
    with pytest.raises(KeyError):
        candle.column("price")


def test_a_document_has_exactly_the_views_fields_in_its_order() -> None:
    series = views.document(views.Series, stale=False, as_of=None, candles=[], timeframe="3m")
    assert list(series) == ["timeframe", "candles", "as_of", "stale"]
    with pytest.raises(TypeError, match=r"missing \['stale'\], unknown \['is_stale'\]"):
        views.document(views.Series, is_stale=False, as_of=None, candles=[], timeframe="3m")
