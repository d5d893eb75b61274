"""The API document: committed, current, and saying what the contract says."""

from __future__ import annotations

import json
from pathlib import Path

from services.console.main import openapi_json

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "console-openapi.json"
NOT_LISTS = {"/api/v1/events"}  # an event stream, not a page


def test_the_committed_openapi_document_matches_the_code() -> None:
    assert COMMITTED.read_text() == openapi_json(), (
        "docs/console-openapi.json is stale: run "
        "`python -m services.console.openapi > docs/console-openapi.json`"
    )


def test_every_list_is_paged_and_every_decimal_is_a_string() -> None:
    document = json.loads(openapi_json())
    schemas = document["components"]["schemas"]
    paged = 0
    for path, item in document["paths"].items():
        assert {"401", "422", "503"} <= set(item["get"]["responses"]), path
        if path in NOT_LISTS:  # a stream, not a JSON answer
            continue
        names = {p["name"] for p in item["get"]["parameters"]}
        answer = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        if "next_cursor" in schemas[answer.rsplit("/", 1)[-1]]["properties"]:
            paged += 1
            assert {"limit", "cursor"} <= names, path
    assert paged == 9  # accounts, open, closed, orders, fills, tool calls, exit plans, funding, dead letters
    schema = document["components"]["schemas"]["ClosedPosition"]["properties"]
    assert schema["realized_pnl_usdt"]["anyOf"][0]["type"] == "string"
    assert schema["fee_usdt"]["type"] == "string"
