"""compose.yaml: the deployment's shape, and `docker compose config` when a compose CLI exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"ingest-main", "ingest-second", "positions", "metrics", "mcp_gateway"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_every_service_waits_for_the_one_shot_migrate(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["nats"]["condition"] == "service_healthy", name
        assert "test" in services[name]["healthcheck"], name


def test_infrastructure_is_persistent_postgres_16_and_jetstream(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert int(services["postgres"]["image"].split(":")[1].split("-")[0]) >= 16
    assert "-js" in services["nats"]["command"]
    assert {"pgdata", "natsdata"} <= set(compose["volumes"])
    assert all("healthcheck" in services[name] for name in ("postgres", "nats"))


def test_each_service_command_exists_in_the_cli(compose: dict[str, Any]) -> None:
    from aitrader.cli import COMMANDS
    from aitrader.up import SERVICES

    for name in APP_SERVICES:
        command = compose["services"][name]["command"]
        assert command[0] == "run" and command[1] in SERVICES, name
        health = compose["services"][name]["healthcheck"]["test"]
        if "healthcheck" in health:
            assert health[-1] == command[1]
    assert {"migrate", "run", "healthcheck"} <= set(COMMANDS)


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(compose_cli() is None, reason="no docker compose CLI on this machine")
def test_docker_compose_accepts_the_file() -> None:
    cli = compose_cli()
    assert cli is not None
    result = subprocess.run(
        [*cli, "-f", str(ROOT / "compose.yaml"), "--profile", "second-account", "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
