"""One HTTP exchange with a provider, shared by every client: what a failure to talk becomes.

A timeout or a connection-level error is not an answer, so it becomes a
:class:`~migrator.errors.ProviderError` (``Timeout`` / ``Transport``) whose action is ``retry``:
the call may or may not have landed, which is the caller's question, not this module's.

Every answer is logged at debug level (``--verbose``) by :func:`logged`, with the provider's
request id, so any call can be followed into the provider's console. The line carries the call's
name, status, time and request id only: never a URL, header or body, which hold credentials
and signatures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import structlog
from multidict import CIMultiDictProxy
from yarl import URL

from migrator.errors import Action, ProviderError

log = structlog.get_logger("migrator.providers")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]
    started: float
    """When the call was sent (``time.monotonic``), for the time it took."""


def logged(answer: Answer, what: str, request_id: str | None) -> str | None:
    """Log one answered call (debug) and give back its request id."""
    elapsed = round((time.monotonic() - answer.started) * 1000, 1)
    log.debug("call", call=what, status=answer.status, ms=elapsed, request_id=request_id)
    return request_id


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    body: bytes,
    headers: Mapping[str, str],
    limits: aiohttp.ClientTimeout,
    what: str,
) -> Answer:
    started = time.monotonic()
    try:
        async with session.request(
            method, url, data=body or None, headers=dict(headers), timeout=limits
        ) as resp:
            return Answer(resp.status, await resp.read(), resp.headers, started)
    except TimeoutError:
        raise ProviderError(
            "Timeout", f"{what}: no answer within {limits.total}s", action=Action.RETRY
        ) from None
    except aiohttp.ClientConnectorError as exc:
        # Raised while connecting, before a byte of the request is written: it cannot have landed.
        raise ProviderError(
            "Unreachable", f"{what}: {type(exc).__name__}: {exc}", action=Action.UNSENT
        ) from None
    except aiohttp.ClientError as exc:
        raise ProviderError(
            "Transport", f"{what}: {type(exc).__name__}: {exc}", action=Action.RETRY
        ) from None
