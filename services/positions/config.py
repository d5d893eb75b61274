"""Settings of the positions service (environment variables `AITRADER_POSITIONS_*`)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class PositionsSettings(Settings):
    """Knobs of the fill-ledger consumer; the defaults suit one process on two cores."""

    positions_consumer: str = Field(default="positions", pattern=r"^[A-Za-z0-9_-]+$")
    positions_batch_size: int = Field(default=5000, ge=1, le=10_000)
    # Once a message has arrived, the fetch of the others pending waits at most this long
    # (it normally returns as soon as they are read: it asks only for messages that exist).
    positions_batch_wait_seconds: float = Field(default=0.25, gt=0, le=1)
    # Unacked messages are redelivered (to the partition's owner) after this.
    positions_ack_wait_seconds: float = Field(default=30.0, gt=0)
    # A partition's owner that has not pulled for this long loses it to a standby instance: the
    # bound of a failover (docs/positions.md, partitions). Above the longest commit of a batch.
    positions_pinned_ttl_seconds: float = Field(default=5.0, ge=0.5, le=120)
    # How often an instance compares the partitions it owns with its fair share.
    positions_rebalance_seconds: float = Field(default=2.0, gt=0, le=60)
    positions_max_ack_pending: int = Field(default=50_000, ge=1)
    # A fill for an instrument not in `instruments` is retried this long after both the
    # service's start and the message's publication, then dead-lettered.
    positions_instrument_grace_seconds: float = Field(default=300.0, ge=0)
    positions_retry_max_seconds: float = Field(default=30.0, gt=0)
    # After a fold closed a slot, each CancelAlgo request for an algo it left live waits this
    # long for ingest's reply (the no-orphans safety net).
    positions_cancel_algo_deadline_seconds: float = Field(default=3.0, gt=0, le=30)


def positions_settings(settings: Settings) -> PositionsSettings:
    """Accept plain `Settings` (tests, `aitrader up`) and add this service's defaults."""
    if isinstance(settings, PositionsSettings):
        return settings
    return PositionsSettings(**settings.model_dump())
