"""`aitrader okx-sim`: run the local OKX v5 exchange until interrupted."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import click
import structlog

from .config import DEFAULT_SYMBOLS, AccountSpec, SimConfig
from .runner import run_sim
from .state import StateError

log = structlog.get_logger("okx_sim")


@click.command(name="okx-sim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int, help="0 = any free port")
@click.option("--seed", default=1, show_default=True, type=int, help="same seed, same market")
@click.option("--symbols", default=",".join(DEFAULT_SYMBOLS), show_default=True,
              help="comma-separated USDT swaps")
@click.option("--pos-mode", type=click.Choice(["net", "long_short"]), default="net",
              show_default=True)
@click.option("--account", "accounts", multiple=True, metavar="KEY:SECRET:PASSPHRASE",
              help="an API key (repeatable); default sim-key:sim-secret:sim-passphrase")
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
            accounts: tuple[str, ...], balance: str, tls_cert: str | None,
            tls_key: str | None, test_controls: bool, funding_interval: int, slippage: str,
            speed: str, no_liquidation: bool, state_file: str | None) -> None:
    """Run a local exchange that speaks OKX v5 (REST and websockets on one port)."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    try:
        specs = tuple(AccountSpec.parse(a, Decimal(balance)) for a in accounts) or (
            AccountSpec("sim-key", "sim-secret", "sim-passphrase", Decimal(balance)),)
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
        raise click.ClickException(str(err)) from None


async def _serve(config: SimConfig) -> None:
    async with run_sim(config) as sim:
        click.echo(f"okx-sim listening: REST {sim.rest_url}")
        click.echo(f"  websockets {sim.ws_public_url} | {sim.ws_business_url} | "
                   f"{sim.ws_private_url}")
        click.echo(f"  symbols {', '.join(config.instrument_specs())}; accounts "
                   f"{', '.join(a.api_key for a in config.accounts)}; pos mode {config.pos_mode}"
                   f"; seed {config.seed}; test controls {'on' if config.test_controls else 'off'}")
        log.info("okx_sim.started", rest=sim.rest_url, seed=config.seed)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
