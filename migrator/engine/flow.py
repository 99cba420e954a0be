"""Flow control for one provider account: a concurrency limit and a retry policy.

Every call to a provider (reads, writes and polls alike) goes through one :class:`Flow`, so the
limit is per account and not per stage. Retries use full-jitter exponential backoff (the AWS
"standard" mode), wait at least what the provider asked for (``x-acs-retry-after`` in ms,
``Retry-After`` in s, already converted to seconds on the error), and never retry what the
provider's error table calls terminal.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import structlog

from migrator.errors import ProviderError

T = TypeVar("T")
log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Flow:
    """The concurrency limit and retry policy shared by every call to one provider account."""

    concurrency: int = 16
    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 20.0
    sleep: Sleep = anyio.sleep
    rng: random.Random = field(default_factory=random.Random)
    limiter: anyio.CapacityLimiter = field(init=False)
    retries: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.concurrency)

    def backoff(self, retry: int, floor: float | None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)], but never below the server's ask."""
        delay = self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**retry))
        return max(delay, floor or 0.0)

    async def call(self, what: str, fn: Callable[[], Awaitable[T]], *, attempts: int | None = None) -> T:
        """Run ``fn`` under the limit, retrying retryable provider errors.

        ``attempts=1`` is for calls that must never be repeated blindly (a non-idempotent create):
        the caller decides what an unanswered one means.
        """
        limit = attempts or self.max_attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.limiter:
                    return await fn()
            except ProviderError as exc:
                if not exc.retryable or attempt >= limit:
                    raise
                delay = self.backoff(attempt - 1, exc.retry_after)
                self.retries += 1
                log.info(
                    "retry",
                    call=what,
                    code=exc.code,
                    attempt=attempt,
                    delay=round(delay, 3),
                    request_id=exc.request_id,
                )
                await self.sleep(delay)
