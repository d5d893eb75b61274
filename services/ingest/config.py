"""Ingest settings: the shared settings plus this service's knobs (prefix AITRADER_INGEST_)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class IngestSettings(Settings):
    """Settings of one ingest process (one process per OKX account)."""

    # Only one ingest process of a deployment publishes market data (DESIGN §4); the others
    # set this to false. Nats-Msg-Id also collapses duplicates if two publish by mistake.
    ingest_market_data: bool = True
    ingest_order_timeout_s: float = Field(default=5.0, gt=0, le=60)
    ingest_backfill_candles: int = Field(default=300, ge=50, le=1440)
    ingest_ping_after_s: float = Field(default=25.0, gt=0, lt=30)
    ingest_pong_timeout_s: float = Field(default=5.0, gt=0)
    ingest_backoff_initial_s: float = Field(default=0.5, gt=0)
    ingest_backoff_max_s: float = Field(default=30.0, gt=0)
    ingest_instruments_refresh_s: float = Field(default=86_400.0, gt=0)
    ingest_rest_timeout_s: float = Field(default=10.0, gt=0)
    # The fill sweep (docs/ingest.md "Gap-free fills"): every period, the exchange's fills of the
    # look-back window are compared with the ledger's and the missing ones published.
    ingest_fill_sweep_s: float = Field(default=60.0, ge=1, le=3600)
    ingest_fill_sweep_lookback_s: float = Field(default=3600.0, ge=60, le=3 * 86_400)
    # Reconciliation (docs/reconciliation.md): on start, after every reconnect, every period;
    # its fill comparison looks back further than the minute's sweep.
    ingest_reconcile_s: float = Field(default=300.0, ge=10, le=86_400)
    ingest_reconcile_lookback_s: float = Field(default=86_400.0, ge=60, le=3 * 86_400)
    # How long a difference must outlast in-flight pushes, and how long a stage waits for its
    # healing entries to reach the ledger.
    ingest_reconcile_settle_s: float = Field(default=3.0, ge=0, le=60)
    ingest_reconcile_wait_s: float = Field(default=15.0, gt=0, le=300)
