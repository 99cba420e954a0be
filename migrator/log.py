"""structlog set-up: readable lines on a terminal, JSON lines otherwise, secrets always masked.

Secrets are masked twice over: any field whose name says it is secret is replaced, and every
value registered with :func:`register_secret` (credentials as they are loaded) is scrubbed from
every string in the event, so a secret that slips into an exception message still never lands.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import structlog

MASK = "***"


def moment(epoch: float) -> str:
    """A point in time as messages, status and reports show it: local time with its zone."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


_SECRET_FIELD = re.compile(r"secret|password|passwd|token|signature|authorization", re.IGNORECASE)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if _SECRET_FIELD.search(key) and key != "event":
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = scrub(value)
        elif value is not None and not isinstance(value, int | float | bool):
            event[key] = scrub(str(value))
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is *now*, so a live progress display that redirects it
    (rich does) prints log lines above the bar instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(*, verbose: bool = False, quiet: bool = False, json_logs: bool | None = None) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    as_json = not sys.stderr.isatty() if json_logs is None else json_logs
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
