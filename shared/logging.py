"""structlog setup: one JSON object per line when not a TTY, readable lines on a TTY.

Secrets never reach the output: values of secret-looking keys are masked, and every secret
value registered here (from settings) is replaced wherever it appears in a string.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "***"
_SECRET_KEY = re.compile(
    r"(api[_-]?key|secret|passphrase|password|token|authorization|(^|[_-])sign(ature)?$|ok-access-)",
    re.IGNORECASE,
)
_secret_values: set[str] = set()
# Each registered value as it is and as JSON writes it inside a string (escaped, ASCII or not).
_secret_forms: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that they are masked wherever they appear."""
    for value in values:
        if value and len(value) >= 4:
            _secret_values.add(value)
            escaped = (json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1])
            _secret_forms.update((value, *escaped))


def may_hold_secret_value(json_text: str) -> bool:
    """False when no registered secret value is in the value this JSON text encodes: the text
    holds none (raw or JSON-escaped) and no \\u escape (which could spell one). Enough on its
    own for JSON whose keys are known not to be secret-looking."""
    return "\\u" in json_text or any(form in json_text for form in _secret_forms)


def redact_text(text: str) -> str:
    for value in _secret_values:
        if value in text:
            text = text.replace(value, MASK)
    return text


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    # Keys repeat (log fields, tool arguments, the views' field names): the verdict is cached,
    # which makes a walk of a large document several times faster than a regex search per key.
    return _SECRET_KEY.search(key) is not None


def redact(value: Any, key: str = "") -> Any:
    """Mask secrets in a JSON-like value: secret keys, and registered secret values anywhere."""
    if key and value not in (None, "") and _is_secret_key(key):
        return MASK
    return _redact(value)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: MASK if _is_secret_key(str(k)) and v not in (None, "") else _redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def _redact_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {k: redact(v, k) if k != "event" else redact(v) for k, v in event_dict.items()}


class _Stderr:
    """Whatever `sys.stderr` is at write time (test runners swap it, and close the old one)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_STDERR = _Stderr()
# Libraries whose INFO lines are one per request (a third of a demo's output): warnings only.
QUIET_LIBRARIES = ("httpx", "httpcore")


def configure_logging(
    level: str = "info", fmt: str = "auto", service: str | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and the stdlib root logger once per process (to `stream`, or to
    whatever `sys.stderr` is when a line is written)."""
    out: Any = stream if stream is not None else _STDERR
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_processor,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers[:] = [_stdlib_handler(out, renderer)]
    root.setLevel(max(numeric, logging.INFO) if numeric < logging.INFO else numeric)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    if service:
        structlog.contextvars.bind_contextvars(service=service)


def _stdlib_handler(out: Any, renderer: Any) -> logging.Handler:
    """Libraries that log through the stdlib (uvicorn, nats, httpx) in the same format and
    through the same redaction as structlog's own lines."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            # exc_info becomes the traceback's text before redaction (which would turn the
            # tuple into a list of reprs: `<traceback object at 0x…>`).
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                _redact_processor,
            ],
        )
    )
    return handler


def get_logger(name: str | None = None, **context: Any) -> Any:
    return structlog.get_logger(name).bind(**context) if context else structlog.get_logger(name)
