"""The `aitrader` command: one entry point; each service owns its own subcommands.

Subcommands are imported lazily (a service's dependencies load only when its command runs),
so `aitrader migrate` does not pay for the MCP SDK and a broken service cannot break the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from shared.version import VERSION

# name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "migrate": "aitrader.cli_common:migrate_command",
    "up": "aitrader.up:up_command",
    "run": "aitrader.service_commands:run_command",
    "healthcheck": "aitrader.service_commands:healthcheck_command",
    "okx-sim": "services.okx_sim.cli:command",
    "replay": "services.positions.cli:replay_command",
    "reconcile": "services.ingest.cli:reconcile_command",
    "token": "services.mcp_gateway.cli:token_group",
    "mcp": "services.mcp_gateway.cli:mcp_command",
    "demo": "aitrader.demo:demo_command",
    "status": "aitrader.views:status_command",
    "trades": "aitrader.views:trades_command",
    "performance": "aitrader.views:performance_command",
    "calls": "aitrader.views:calls_command",
    "retention": "aitrader.retention_cli:retention_command",
    "archive": "aitrader.retention_cli:archive_group",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return _missing(cmd_name)
            raise
        command: click.Command = getattr(module, attr)
        return command


def _missing(name: str) -> click.Command:
    @click.command(name=name, help="(not available in this build)")
    def _cmd() -> None:
        raise click.ClickException(f"'aitrader {name}' is not available in this build")

    return _cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, "--version", "-V", prog_name="aitrader", message="%(prog)s %(version)s")
def cli() -> None:
    """AiTrader data plane: OKX perpetual swaps under AI agents."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="aitrader")


if __name__ == "__main__":
    main()
