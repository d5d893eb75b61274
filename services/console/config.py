"""Console settings: the shared `Settings` plus `AITRADER_CONSOLE_*`."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr

from shared.settings import Settings


class ConsoleSettings(Settings):
    """Settings of the console service."""

    # console_host / console_port are shared settings (`aitrader up` needs them too).
    # The role the console connects as (migration 0013 creates `aitrader_console`: LOGIN, no
    # BYPASSRLS, SELECT only, subject to row-level security). Host, port and database are
    # AITRADER_DATABASE_URL's; its user and password are replaced by these.
    console_db_role: str = Field(default="aitrader_console", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    console_db_password: SecretStr | None = None
    console_db_pool_size: int = Field(default=8, ge=1)
    # Verified tokens are cached this long: a revocation takes effect within it.
    console_token_cache_s: float = Field(default=2.0, ge=0)
    # GET /api/v1/events (services/console/events.py): events a client may have waiting before
    # it is dropped, the heartbeat comment's period, the `retry:` the browser is told, and how
    # long one write may block before the stream is ended.
    console_events_queue_size: int = Field(default=256, ge=1, le=100_000)
    console_events_heartbeat_s: float = Field(default=15.0, gt=0)
    console_events_retry_ms: int = Field(default=3000, ge=0)
    console_events_send_timeout_s: float = Field(default=10.0, gt=0)
    console_events_replay: int = Field(default=1000, ge=0, le=100_000)  # kept for Last-Event-ID

    def console_dsn(self) -> str:
        """AITRADER_DATABASE_URL with the console's role (and password) in place of its user."""
        parts = urlsplit(self.require_database_url())
        user = quote(self.console_db_role, safe="")
        if self.console_db_password is not None:
            user += ":" + quote(self.console_db_password.get_secret_value(), safe="")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def secret_values(self) -> list[str]:
        extra = [self.console_db_password.get_secret_value()] if self.console_db_password else []
        return [*super().secret_values(), *extra]


def console_settings(settings: Settings) -> ConsoleSettings:
    """The console's view of any `Settings` (a plain one gets the console defaults)."""
    if isinstance(settings, ConsoleSettings):
        return settings
    return ConsoleSettings(**settings.model_dump())
