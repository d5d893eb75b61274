"""NATS / JetStream: connections, publishing and the stream declarations (DESIGN §4).

Streams are declared in one place with explicit limits and a duplicate window, so that the
`Nats-Msg-Id` of every publish (see `shared.messages`) collapses duplicates server-side.

On a cluster (AITRADER_NATS_URL lists its nodes) the client reconnects to any surviving node,
streams keep AITRADER_NATS_STREAM_REPLICAS copies, and `publish_event` rides out the election
of a new stream leader (a few seconds after a node dies) by publishing again with the same
`Nats-Msg-Id`: a message that did land the first time is dropped as a duplicate.
A partitioned stream (`shared.subjects.PARTITIONED`: ACCOUNT) gets its subject transform here,
with the partition count every service passes (`Settings.nats_account_partitions`).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Final

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, SubjectTransform
from nats.js.errors import APIError, BadRequestError, NotFoundError

from shared.errors import ConfigError
from shared.logging import get_logger
from shared.messages import Event
from shared.settings import nats_servers, redact_url
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
REPLICAS_SETTING = "AITRADER_NATS_STREAM_REPLICAS"
# How long `publish_event` keeps trying: a stream leader's election after its node died takes
# 4-9 s (nats-server's raft election timeout); measured ~5-7 s here (docs/operations.md).
FAILOVER_S: Final = 20.0
_RETRY_PAUSE_S: Final = (0.05, 0.1, 0.25, 0.5)
# No leader to answer (an election under way), no answer in time, or the connection moving to
# another node: a publish with the same Nats-Msg-Id may be tried again.
_PUBLISH_RETRY = (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError,
                  nats.errors.TimeoutError, TimeoutError, nats.errors.ConnectionReconnectingError,
                  nats.js.errors.ServiceUnavailableError)
_NOT_CLUSTERED: Final = 10074  # "replicas > 1 not supported in non-clustered mode"
# "no suitable peers for placement" (fewer nodes than replicas), "insufficient resources"
_NO_ROOM: Final = frozenset({10005, 10023})


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
    """Create the streams, or bring an existing stream's configuration up to date — its replica
    count too (JetStream copies or drops replicas online; a count the servers cannot hold is a
    `ConfigError` saying what to set) and the partition count (applied to messages stored from
    then on: docs/positions.md, re-partitioning)."""
    for config in stream_configs(subjects, replicas, partitions):
        assert config.name is not None
        try:
            try:
                current = await js.stream_info(config.name)
            except NotFoundError:
                try:
                    await js.add_stream(config)
                    continue
                except BadRequestError as exc:  # created concurrently by another service
                    if exc.err_code != 10058:  # stream name already in use
                        raise
                current = await js.stream_info(config.name)
            before = current.config.num_replicas or 1
            await js.update_stream(config)
        except APIError as exc:
            raise _replicas_error(exc, config.name, replicas) from None
        if before != replicas:
            get_logger("nats").warning("stream_replicas_changed", stream=config.name,
                                       before=before, after=replicas, setting=REPLICAS_SETTING)


def _replicas_error(exc: APIError, stream: str, replicas: int) -> Exception:
    if exc.err_code == _NOT_CLUSTERED:
        return ConfigError(REPLICAS_SETTING, f"{replicas} replicas of stream {stream}, but the NATS "
                           "server is not a cluster: set it to 1, or list a cluster's nodes in "
                           "AITRADER_NATS_URL")
    if exc.err_code in _NO_ROOM:
        return ConfigError(REPLICAS_SETTING, f"{replicas} replicas of stream {stream}, but the "
                           "cluster has fewer JetStream nodes (or no room): set it to at most the "
                           "node count")
    return exc


async def connect_nats(url: str, *, name: str = "aitrader", **options: Any) -> Client:
    """Connect with nats-py to any of the servers `url` lists (one, or a cluster's nodes); an
    unreachable or malformed URL is a `ConfigError` (credentials never shown)."""
    options.setdefault("error_cb", _log_nats_error)
    try:
        servers = nats_servers(url)
    except ValueError as exc:
        raise ConfigError(SETTING, str(exc)) from None
    shown = ",".join(redact_url(server) for server in servers)
    try:
        # A bounded first connection (each server tried once, 3 s each: a wrong URL fails
        # fast), then reconnect forever, to whichever listed or discovered node answers.
        client = await nats.connect(
            servers=servers,
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
        reason = _without_credentials(str(exc), servers)
        raise ConfigError(SETTING, f"cannot connect to {shown} ({type(exc).__name__}: {reason})") from None
    except nats.errors.Error as exc:
        raise ConfigError(SETTING, f"{shown}: {_without_credentials(str(exc), servers)}") from None


def _without_credentials(text: str, servers: list[str]) -> str:
    """`text` (an error from the client) with each server's user, password or token masked."""
    for server in servers:
        netloc = server.split("://", 1)[-1]
        if "@" in netloc:
            text = text.replace(netloc.rsplit("@", 1)[0], "***")
    return text


async def _log_nats_error(exc: Exception) -> None:
    get_logger("nats").warning("nats_error", error=f"{type(exc).__name__}: {exc}")


def headers_for(event: Event) -> dict[str, str]:
    """Publish headers: the deduplication id and the schema version."""
    return {"Nats-Msg-Id": event.msg_id(), "schema-version": str(event.schema_version)}


async def publish_event(js: JetStreamContext, subject: str, event: Event, timeout: float = 5.0,
                        within: float = FAILOVER_S) -> Any:
    """Publish one event to JetStream and wait for its PubAck (each try bounded by `timeout`);
    tried again with the same Nats-Msg-Id while no stream leader answers, for up to `within`
    seconds (a failover), then the last error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    headers = headers_for(event)
    data = event.to_bytes()
    pauses = iter(_RETRY_PAUSE_S)
    while True:
        try:
            return await js.publish(subject, data, timeout=timeout, headers=headers)
        except _PUBLISH_RETRY:
            pause = next(pauses, _RETRY_PAUSE_S[-1])
            if loop.time() + pause >= deadline:
                raise
            await asyncio.sleep(pause)  # the pace of retries while a leader is elected
