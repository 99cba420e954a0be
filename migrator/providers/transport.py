"""One HTTP exchange with a provider, shared by every client: what a failure to talk becomes.

A timeout or a connection-level error is not an answer, so it becomes a
:class:`~migrator.errors.ProviderError` (``Timeout`` / ``Transport``) whose action is ``retry``:
the call may or may not have landed, which is the caller's question, not this module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from migrator.errors import Action, ProviderError


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]


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
    try:
        async with session.request(
            method, url, data=body or None, headers=dict(headers), timeout=limits
        ) as resp:
            return Answer(resp.status, await resp.read(), resp.headers)
    except TimeoutError:
        raise ProviderError(
            "Timeout", f"{what}: no answer within {limits.total}s", action=Action.RETRY
        ) from None
    except aiohttp.ClientError as exc:
        raise ProviderError(
            "Transport", f"{what}: {type(exc).__name__}: {exc}", action=Action.RETRY
        ) from None
