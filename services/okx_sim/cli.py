"""`aitrader okx-sim`: run the local OKX v5 exchange until interrupted."""

from __future__ import annotations

import asyncio
import os
import signal
from decimal import Decimal
from pathlib import Path

import click

from shared.errors import ConfigError
from shared.logging import configure_logging, get_logger, register_secrets
from shared.settings import Settings, load_settings

from .accounts import ACCOUNTS_ENV, ACCOUNTS_FILE_ENV, AccountsError, load_accounts
from .config import ACCOUNT_FORMAT, DEFAULT_SYMBOLS, SimConfig
from .runner import run_sim
from .state import StateError

log = get_logger("okx_sim")


class SetupError(click.ClickException):
    """A one-line refusal at start (exit 2, no usage text)."""

    exit_code = 2


@click.command(name="okx-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int, help="0 = any free port")
@click.option("--seed", default=1, show_default=True, type=int, help="same seed, same market")
@click.option("--symbols", default=",".join(DEFAULT_SYMBOLS), show_default=True,
              help="comma-separated USDT swaps")
@click.option("--pos-mode", type=click.Choice(["net", "long_short"]), default="net",
              show_default=True)
@click.option("--account", "accounts", multiple=True, metavar=ACCOUNT_FORMAT,
              help=f"an API key (repeatable; visible to `ps`: prefer {ACCOUNTS_ENV} or "
                   "--accounts-file); default sim-key:sim-secret:sim-passphrase (demo)")
@click.option("--accounts-file", type=click.Path(path_type=Path), envvar=ACCOUNTS_FILE_ENV,
              help="one account per line, mode 0600 (group/world-readable files are refused)")
@click.option("--balance", default="10000", show_default=True, help="starting USDT per account")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--test-controls", is_flag=True, help="enable POST /sim/control/...")
@click.option("--funding-interval", default=8 * 3600, show_default=True, type=int,
              help="seconds between funding settlements")
@click.option("--slippage", default="0", show_default=True, help="relative, e.g. 0.0005")
@click.option("--speed", default="1", show_default=True, help="simulated seconds per second")
@click.option("--no-liquidation", is_flag=True, help="never liquidate positions")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="keep accounts, orders, fills and positions here across restarts")
def command(host: str, port: int, seed: int, symbols: str, pos_mode: str,
            accounts: tuple[str, ...], accounts_file: Path | None, balance: str,
            tls_cert: str | None, tls_key: str | None, test_controls: bool,
            funding_interval: int, slippage: str, speed: str, no_liquidation: bool,
            state_file: str | None) -> None:
    """Run a local exchange that speaks OKX v5 (REST and websockets on one port).

    Accounts also come from AITRADER_OKX_SIM_ACCOUNTS (whitespace-separated) and
    AITRADER_OKX_SIM_ACCOUNTS_FILE."""
    _configure_logging()
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        specs = load_accounts(accounts, os.environ.get(ACCOUNTS_ENV),
                              accounts_file, Decimal(balance))
    except AccountsError as err:
        raise SetupError(str(err)) from None
    except ArithmeticError as err:
        raise click.UsageError(f"--balance: {err}") from None
    register_secrets(s for spec in specs for s in (spec.secret, spec.passphrase))
    try:
        config = SimConfig(
            host=host, port=port, seed=seed,
            symbols=tuple(s.strip() for s in symbols.split(",") if s.strip()),
            accounts=specs, pos_mode=pos_mode, tls_cert=tls_cert, tls_key=tls_key,
            test_controls=test_controls, funding_interval_s=funding_interval,
            slippage=Decimal(slippage), speed=Decimal(speed), liquidation=not no_liquidation,
            state_file=state_file)
        config.instrument_specs()
    except (ValueError, ArithmeticError) as err:
        raise click.UsageError(str(err)) from err
    try:
        asyncio.run(_serve(config))
    except StateError as err:
        raise SetupError(str(err)) from None


def _configure_logging() -> None:
    """The log format of every other process (AITRADER_LOG_LEVEL / AITRADER_LOG_FORMAT)."""
    try:
        settings = load_settings(Settings)
    except ConfigError as err:
        raise SetupError(f"configuration error: {err}") from None
    configure_logging(settings.log_level, settings.log_format, service="okx_sim")


def banner(rest_url: str, ws_urls: list[str], config: SimConfig) -> list[str]:
    """What the simulator prints on stdout at start: where it listens, and no key."""
    live = sum(1 for a in config.accounts if a.live)
    return [
        f"okx-sim listening: REST {rest_url}",
        f"  websockets {' | '.join(ws_urls)} (production: /live/ws/v5/...)",
        f"  symbols {', '.join(config.instrument_specs())}; accounts {len(config.accounts)} "
        f"({len(config.accounts) - live} demo, {live} live); pos mode {config.pos_mode}"
        f"; seed {config.seed}; test controls {'on' if config.test_controls else 'off'}",
    ]


async def _serve(config: SimConfig) -> None:
    async with run_sim(config) as sim:
        ws_urls = [sim.ws_public_url, sim.ws_business_url, sim.ws_private_url]
        for line in banner(sim.rest_url, ws_urls, config):
            click.echo(line)
        log.info("okx_sim.started", rest=sim.rest_url, seed=config.seed,
                 accounts=len(config.accounts))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGTERM (how `aitrader up` and a container stop it) ends like Ctrl-C: through the
        # context's exit, which writes the state file's last save.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        except asyncio.CancelledError:
            pass
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

