"""Gateway settings: the shared `Settings` plus the gateway's limits (prefix `AITRADER_MCP_`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field

from services.mcp_gateway.spill import default_spill_dir
from shared.settings import Settings


class GatewaySettings(Settings):
    """Settings of the MCP gateway."""

    # Server-side trading limits, on top of each instrument's own (lotSz, minSz, max leverage).
    mcp_max_leverage: Decimal = Field(default=Decimal(20), gt=0)
    mcp_max_notional_usdt: Decimal = Field(default=Decimal(100_000), gt=0)
    # execute_trade: how long to wait for ingest's answer, then for the fills to be folded.
    mcp_order_timeout_ms: int = Field(default=5_000, ge=100)
    mcp_fill_wait_ms: int = Field(default=1_500, ge=0)
    # Exit orders: how long to wait for the exchange's algo-order updates to reach the ledger
    # (an attached TP/SL after a flip; the result of a placement, so a repeated call sends nothing).
    mcp_exit_settle_ms: int = Field(default=1_500, ge=0)
    # get_market_data: how long a stale read may wait for ingest + metrics to catch up.
    mcp_refresh_timeout_ms: int = Field(default=3_000, ge=0)
    # Verified tokens are cached this long: a revocation takes effect within it.
    mcp_token_cache_s: float = Field(default=2.0, ge=0)
    # While the database is away, a token verified this recently still passes (its calls get
    # the tools' retryable error); any other gets HTTP 503. A revoked token passes no longer.
    mcp_token_outage_grace_s: float = Field(default=60.0, ge=0)
    mcp_audit_queue_size: int = Field(default=10_000, ge=10)
    # Audit rows the database has not taken within this long are kept in a local file of this
    # directory (default: `<data dir>/audit-spill`, else the user's state directory) and
    # written once it is back.
    mcp_audit_spill_after_s: float = Field(default=5.0, ge=0)
    mcp_audit_spill_dir: Path | None = None
    mcp_db_pool_size: int = Field(default=16, ge=2)


def audit_spill_dir(config: GatewaySettings) -> Path:
    """Where the audit writer spills the rows the database could not take in time."""
    return config.mcp_audit_spill_dir or default_spill_dir(config.data_dir)


def gateway_settings(settings: Settings) -> GatewaySettings:
    """The gateway's view of any `Settings` (a plain one gets the gateway defaults)."""
    if isinstance(settings, GatewaySettings):
        return settings
    return GatewaySettings(**settings.model_dump())
