"""Typed errors. The type decides what happens to a message or a command (for a message, the
whole table is `shared.consumer.fate_of`):

- `PermanentError`: can never succeed -> dead letter with the reason and its `kind`, then ack.
- `TransientError`: may succeed later (database down, instrument not loaded yet) -> nack, retry.
- `ConfigError`: bad configuration -> one clear line naming the setting, exit non-zero.
"""

from __future__ import annotations

from typing import ClassVar


class AitraderError(Exception):
    """Base of every error this product raises on purpose."""


class ConfigError(AitraderError):
    """A setting is missing, malformed or points at something unusable."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class MigrationError(AitraderError):
    """The migrations on disk and in the database disagree."""


class PermanentError(AitraderError):
    """The message can never be processed; it goes to the dead letters with this reason."""

    kind: ClassVar[str] = "permanent"  # the dead letter's error_type; a subclass may name its own


class TransientError(AitraderError):
    """A retry may succeed; the message must not be acked yet."""
