"""Settings of the metrics service: `AITRADER_METRICS_*` on top of the shared ones."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class MetricsSettings(Settings):
    """The shared settings plus the metrics service's timers and consumer names."""

    # Equity snapshots of every active account, on each UTC minute boundary.
    metrics_equity_interval_s: float = Field(default=60.0, gt=0, le=60)
    # Full performance refresh of every active account.
    metrics_refresh_interval_s: float = Field(default=60.0, gt=0)
    # Position events are collected this long before their accounts are refreshed.
    metrics_debounce_s: float = Field(default=0.5, ge=0, le=5)
    # The retention run (docs/retention.md): at start, then this often; 0 turns it off.
    metrics_retention_interval_s: float = Field(default=86_400.0, ge=0)
    metrics_market_consumer: str = "metrics-market"
    metrics_candle_consumer: str = "metrics-candles"
    metrics_positions_consumer: str = "metrics-positions"
    # Deliveries of a message that keeps failing unexpectedly before it is dead-lettered.
    metrics_max_deliver: int = Field(default=10, ge=2)
