"""Which port `aitrader healthcheck` asks: the environment's, else the stack's record, else the
default; and the record a stack writes."""

from __future__ import annotations

from pathlib import Path

from aitrader.ports import choose_health_ports, health_port, health_url, read_ports, remove_ports, write_ports


def test_a_base_gives_consecutive_ports_and_no_base_gives_distinct_free_ones() -> None:
    assert choose_health_ports(19100) == {"ingest": 19100, "positions": 19101, "metrics": 19102}
    free = choose_health_ports(None)
    assert set(free) == {"ingest", "positions", "metrics"}


def test_the_environment_wins_then_the_record_then_the_default(tmp_path: Path) -> None:
    write_ports(tmp_path, {"positions": 40001, "mcp_gateway": 40009})
    recorded = read_ports(tmp_path)
    assert health_port("positions", {}, recorded) == 40001
    assert health_port("positions", {"AITRADER_HEALTH_PORT": "40100"}, recorded) == 40100
    assert health_port("mcp_gateway", {}, recorded) == 40009
    assert health_port("metrics", {}, recorded) == 9103
    assert health_url("positions", {}, tmp_path) == "http://127.0.0.1:40001/readyz"
    remove_ports(tmp_path)
    assert health_url("positions", {}, tmp_path) == "http://127.0.0.1:9102/readyz"
    assert health_url("mcp_gateway", {}, tmp_path) == "http://127.0.0.1:8765/readyz"


def test_an_unreadable_record_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "ports.json").write_text("{half")
    assert read_ports(tmp_path) == {}


def test_the_console_answers_its_health_on_its_api_port(tmp_path: Path) -> None:
    assert health_port("console", {}, {}) == 8780
    assert health_port("console", {"AITRADER_CONSOLE_PORT": "40200"}, {"console": 40009}) == 40200
    write_ports(tmp_path, {"console": 40210})
    assert health_url("console", {}, tmp_path) == "http://127.0.0.1:40210/readyz"
