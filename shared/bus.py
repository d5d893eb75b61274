"""NATS / JetStream: connections, publishing and the stream declarations (DESIGN §4).

Streams are declared in one place with explicit limits and a duplicate window, so that the
`Nats-Msg-Id` of every publish (see `shared.messages`) collapses duplicates server-side. A
partitioned stream (`shared.subjects.PARTITIONED`: ACCOUNT) gets its subject transform here, with
the partition count every service passes (`Settings.nats_account_partitions`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, SubjectTransform
from nats.js.errors import BadRequestError, NotFoundError

from shared.errors import ConfigError
from shared.logging import get_logger
from shared.messages import Event
from shared.subjects import (
    DEFAULT_PARTITIONS,
    STREAM_ACCOUNT,
    STREAM_MARKET,
    STREAM_POSITIONS,
    STREAM_RECONCILE,
    STREAMS,
    Subjects,
)

DUPLICATE_WINDOW = timedelta(minutes=10)
# Retention: the database is the store of record; streams only need to bridge restarts.
MAX_AGE = {
    STREAM_MARKET: timedelta(days=2),
    STREAM_ACCOUNT: timedelta(days=30),
    STREAM_POSITIONS: timedelta(days=7),
    STREAM_RECONCILE: timedelta(days=30),
}
SETTING = "AITRADER_NATS_URL"


def _transform(subjects: Subjects, base: str, partitions: int) -> SubjectTransform | None:
    transform = subjects.partition_transform(base, partitions)
    return None if transform is None else SubjectTransform(*transform)


def stream_configs(
    subjects: Subjects, replicas: int = 1, partitions: int = DEFAULT_PARTITIONS
) -> list[StreamConfig]:
    """The streams of the subject table, for this namespace (`partitions`: of ACCOUNT)."""
    return [
        StreamConfig(
            name=subjects.stream(base),
            subjects=[subjects.stream_filter(base)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=MAX_AGE[base].total_seconds(),
            duplicate_window=DUPLICATE_WINDOW.total_seconds(),
            num_replicas=replicas,
            subject_transform=_transform(subjects, base, partitions),
        )
        for base in STREAMS
    ]


async def ensure_streams(
    js: JetStreamContext, subjects: Subjects, replicas: int = 1, partitions: int = DEFAULT_PARTITIONS
) -> None:
    """Create the streams, or bring an existing stream's configuration up to date (a new
    partition count applies to messages stored from then on: docs/positions.md, re-partitioning)."""
    for config in stream_configs(subjects, replicas, partitions):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except BadRequestError as exc:  # created concurrently by another service
                if exc.err_code != 10058:  # stream name already in use
                    raise
        await js.update_stream(config)


async def connect_nats(url: str, *, name: str = "aitrader", **options: Any) -> Client:
    """Connect with nats-py; an unreachable or malformed URL is a `ConfigError`."""
    options.setdefault("error_cb", _log_nats_error)
    try:
        # A bounded first connection (a wrong URL fails fast), then reconnect forever.
        client = await nats.connect(
            servers=[u.strip() for u in url.split(",")],
            name=name,
            connect_timeout=3,
            allow_reconnect=True,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            **options,
        )
        client.options["max_reconnect_attempts"] = -1
        return client
    except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
        raise ConfigError(SETTING, f"cannot connect to {url} ({type(exc).__name__}: {exc})") from None
    except nats.errors.Error as exc:
        raise ConfigError(SETTING, f"{url}: {exc}") from None


async def _log_nats_error(exc: Exception) -> None:
    get_logger("nats").warning("nats_error", error=f"{type(exc).__name__}: {exc}")


def headers_for(event: Event) -> dict[str, str]:
    """Publish headers: the deduplication id and the schema version."""
    return {"Nats-Msg-Id": event.msg_id(), "schema-version": str(event.schema_version)}


async def publish_event(js: JetStreamContext, subject: str, event: Event, timeout: float = 5.0) -> Any:
    """Publish one event to JetStream and wait for its PubAck."""
    return await js.publish(subject, event.to_bytes(), timeout=timeout, headers=headers_for(event))
