"""Configuration: environment variables prefixed `AITRADER_` (pydantic-settings).

Each service may subclass `Settings` for its own knobs (same prefix). Secrets are `SecretStr`
and are registered with the log redactor as soon as settings load.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.bars import Timeframe, is_bar
from shared.errors import ConfigError
from shared.subjects import DEFAULT_PARTITIONS, MAX_PARTITIONS
from shared.types import Mode, WsEndpoint

OKX_REST_URL = "https://www.okx.com"
SYMBOL: Final = re.compile(r"^[A-Z0-9]{1,20}-USDT-SWAP$")  # an OKX USDT-margined perpetual swap
OKX_WS = {
    "live": "wss://ws.okx.com:8443/ws/v5",
    "simulated": "wss://wspap.okx.com:8443/ws/v5",
}


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]

NATS_SCHEMES: Final = ("nats", "tls", "ws", "wss")


def redact_url(url: str) -> str:
    """The URL without its credentials (user, password or token): what logs and errors show."""
    parts = urlsplit(url.strip())
    if "@" not in parts.netloc:
        return url.strip()
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def nats_servers(value: str) -> list[str]:
    """AITRADER_NATS_URL as the list of servers it names: one URL or a comma-separated list (a
    cluster's nodes), each nats://host:port (tls://, ws://, wss:// too). ValueError names the
    entry that is wrong, without its credentials."""
    entries = [part.strip() for part in value.split(",")]
    for number, url in enumerate(entries, 1):
        where = f"server {number} of {len(entries)}" if len(entries) > 1 else "the server"
        shown = repr(redact_url(url)) if url else "empty"
        parts = urlsplit(url)
        if parts.scheme not in NATS_SCHEMES or not parts.hostname:
            raise ValueError("expected nats://host:port, or a comma-separated list of them (the "
                             f"nodes of a cluster); {where} is {shown}")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise ValueError(f"bad port ({exc}) in {where}, {shown}") from None
    if len(set(entries)) < len(entries):
        raise ValueError("a server is listed twice")
    return entries


SECRETS_DIR = Path("/run/secrets")


def secrets_dirs() -> tuple[Path, ...] | None:
    """Directories of secret files, one per setting (`aitrader_okx_api_key`, ...; compose
    `secrets:` and the deployment's generated volume): AITRADER_SECRETS_DIR, a path list
    (later ones win), else /run/secrets when it exists. Environment variables win over files."""
    configured = os.environ.get("AITRADER_SECRETS_DIR", "")
    dirs = [Path(p) for p in configured.split(os.pathsep) if p]
    if not dirs and SECRETS_DIR.is_dir():
        dirs = [SECRETS_DIR]
    return tuple(dirs) or None


class Settings(BaseSettings):
    """Settings shared by every service."""

    model_config = SettingsConfigDict(
        env_prefix="AITRADER_", extra="ignore", frozen=True, env_ignore_empty=True,
        secrets_dir=secrets_dirs(),
    )

    # Infrastructure. None means: `aitrader up` starts an embedded server.
    database_url: str | None = None
    nats_url: str | None = None
    # Isolation of the event namespace (tests use a unique root and stream prefix).
    nats_subject_root: str = "aitrader"
    nats_stream_prefix: str = ""
    # Copies of each stream (JetStream replicas): 1 on one server, 3 on a three-node cluster
    # (shared.bus.ensure_streams applies it to existing streams too).
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    # Partitions of the ACCOUNT stream (a stream setting: every service declaring the streams
    # must use the same count); the positions service has one durable consumer per partition.
    nats_account_partitions: int = Field(default=DEFAULT_PARTITIONS, ge=1, le=MAX_PARTITIONS)
    data_dir: Path | None = None
    # Where the retention job writes the Parquet files of rows leaving the hot tables
    # (docs/retention.md); unset: <data_dir>/archive, or no archiving at all without a data_dir.
    archive_dir: Path | None = None
    # Ports of the embedded servers that `aitrader up` starts when no URL is configured.
    embedded_pg_port: int = Field(default=55432, ge=1, le=65535)
    embedded_nats_port: int = Field(default=54222, ge=1, le=65535)
    # How long `aitrader up` waits for every service's /readyz before it gives up (exit 2).
    up_ready_timeout_s: float = Field(default=60.0, gt=0)

    # The account this process acts for (ingest: one process per account).
    account: str | None = None
    account_mode: Mode = "simulated"

    # OKX. URLs default to production, or to OKX demo trading when the account is simulated.
    okx_rest_url: str = OKX_REST_URL
    okx_ws_public_url: str | None = None
    okx_ws_private_url: str | None = None
    okx_ws_business_url: str | None = None
    okx_api_key: SecretStr | None = None
    okx_secret_key: SecretStr | None = None
    okx_passphrase: SecretStr | None = None

    symbols: CsvList = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    timeframes: CsvList = ["3m", "4H"]

    mcp_host: str = "127.0.0.1"
    mcp_port: int = Field(default=8765, ge=0, le=65535)
    # The console API (services/console), like the gateway on a port of its own.
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=8780, ge=0, le=65535)

    deepseek_api_key: SecretStr | None = None

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Health of this process (shared.health): /healthz, /readyz, /metrics. None: not served.
    health_port: int | None = Field(default=None, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    log_format: Literal["auto", "json", "console"] = "auto"

    _split_symbols = field_validator("symbols", "timeframes", mode="before")(_split_csv)

    @field_validator("symbols")
    @classmethod
    def _check_symbols(cls, value: list[str]) -> list[str]:
        """OKX USDT-margined perpetual swaps (ingest subscribes to them, metrics values them)."""
        for symbol in value:
            if not SYMBOL.match(symbol):
                raise ValueError(f"{symbol!r} is not an OKX USDT-margined swap; allowed: BASE-USDT-SWAP "
                                 "instrument ids, e.g. BTC-USDT-SWAP,ETH-USDT-SWAP")
        return value

    @field_validator("timeframes")
    @classmethod
    def _check_timeframes(cls, value: list[str]) -> list[str]:
        """OKX bar names (ingest subscribes to their candles, metrics closes them)."""
        for bar in value:
            if not is_bar(bar):
                raise ValueError(f"unknown bar {bar!r}; allowed: a count 1-99 and a unit s, m, H, D, W or "
                                 "M, optionally with 'utc', e.g. " + ",".join(get_args(Timeframe)))
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres") or not (parts.hostname or parts.path):
            raise ValueError("expected postgresql://user@host:port/dbname")
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise ValueError(f"bad port ({exc})") from None
        return value

    @field_validator("nats_url")
    @classmethod
    def _check_nats_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        nats_servers(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("okx_rest_url", "okx_ws_public_url", "okx_ws_private_url", "okx_ws_business_url")
    @classmethod
    def _check_okx_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ValueError("expected an http(s):// or ws(s):// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_keys(self) -> Settings:
        given = [k is not None for k in (self.okx_api_key, self.okx_secret_key, self.okx_passphrase)]
        if any(given) and not all(given):
            raise ValueError(
                "OKX keys must be given together: AITRADER_OKX_API_KEY, "
                "AITRADER_OKX_SECRET_KEY and AITRADER_OKX_PASSPHRASE"
            )
        return self

    # Derived values -------------------------------------------------------------------------
    def ws_url(self, endpoint: WsEndpoint) -> str:
        explicit = {
            "public": self.okx_ws_public_url,
            "private": self.okx_ws_private_url,
            "business": self.okx_ws_business_url,
        }[endpoint]
        return explicit or f"{OKX_WS[self.account_mode]}/{endpoint}"

    @property
    def has_okx_keys(self) -> bool:
        return self.okx_api_key is not None

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds, for the log redactor."""
        secrets = [self.okx_api_key, self.okx_secret_key, self.okx_passphrase, self.deepseek_api_key]
        values = [s.get_secret_value() for s in secrets if s is not None]
        if self.database_url:
            values.append(urlsplit(self.database_url).password or "")
        for server in nats_servers(self.nats_url) if self.nats_url else []:
            parts = urlsplit(server)  # a password, or a token (nats://TOKEN@host)
            values.append(parts.password or (parts.username if "@" in parts.netloc else None) or "")
        return [v for v in values if v]

    def require_database_url(self) -> str:
        if not self.database_url:
            raise ConfigError("AITRADER_DATABASE_URL", "not set")
        return self.database_url

    def archive_directory(self) -> Path | None:
        """AITRADER_ARCHIVE_DIR, else <data_dir>/archive, else None (nowhere to archive)."""
        if self.archive_dir is not None:
            return self.archive_dir
        return self.data_dir / "archive" if self.data_dir is not None else None

    def require_nats_url(self) -> str:
        if not self.nats_url:
            raise ConfigError("AITRADER_NATS_URL", "not set")
        return self.nats_url


S = TypeVar("S", bound=Settings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Load settings; a validation failure becomes one `ConfigError` naming the variable."""
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        name = f"AITRADER_{field.upper()}" if first["loc"] else "AITRADER_*"
        raise ConfigError(name, str(first["msg"]).removeprefix("Value error, ")) from None
    from shared.logging import register_secrets

    register_secrets(settings.secret_values())
    return settings
