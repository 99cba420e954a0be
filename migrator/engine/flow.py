"""Flow control for one provider account: every call to it, reads, writes and polls, goes here.

A call waits for a concurrency slot (one at a time until the account has answered once), then
for its send slot at the account's paced rate (:mod:`~migrator.engine.rate`, per read/write class
and overall where the provider has such quotas), and is then sent. Its answer is classified by
the provider's error table into an :class:`~migrator.errors.Action`:

- ``throttle`` lowers the rate and, like ``retry``, is sent again after a full-jitter
  exponential backoff that waits at least what the provider asked (``x-acs-retry-after``,
  ``Retry-After``), paid for from the client-wide :class:`~migrator.engine.budget.RetryBudget`;
  a throttle does not use up one of the call's ``max_attempts`` (it says nothing about the
  request), so only the budget bounds it;
- ``resign`` is sent again at once (a fresh nonce and timestamp), up to :data:`RESIGNS` times: a
  used nonce can come back, as the HTTP client sends a GET again, nonce and all, on a kept-alive
  connection the server reset after it had taken the request; a clock that is wrong cannot;
- ``fail`` is the caller's item's problem, raised as is;
- ``stop`` and ``park`` (and a throttle asking to wait longer than ``park_after``) open the
  :class:`~migrator.engine.circuit.Circuit`: this call and every later one raise
  :class:`~migrator.errors.ProviderStopped` without being sent.

A create that must never be repeated blindly passes ``find``: after an answer that leaves it
unknown whether the create landed (a 5xx, a timeout, a reset), ``find`` looks it up, and what is
found is adopted; it is sent again only if nothing is found. Refusals that prove the request did
nothing (throttle, re-sign) are re-sent directly.

What each item's calls cost (calls, retries, throttles) is added to the :class:`Tally` the caller
opened with :func:`tally`, so the pipeline can record it on the item.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import anyio
import structlog

from migrator.engine.budget import RetryBudget, cost_of
from migrator.engine.circuit import Circuit
from migrator.engine.rate import AdaptiveRate
from migrator.errors import Action, ProviderError, ProviderStopped
from migrator.log import moment

if TYPE_CHECKING:
    from migrator.config import ProviderConfig

T = TypeVar("T")
log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: How long to park when a park answer gives no reset time.
DEFAULT_PARK = 3600.0
#: Fresh signatures one call may send after signature refusals before the provider is stopped.
RESIGNS = 3
#: A configured quota is paced this far under, so clock jitter between us and the gateway never
#: crosses it.
HEADROOM = 0.98


@dataclass(slots=True)
class Tally:
    """What one item's calls cost, for its row in the store."""

    calls: int = 0
    retries: int = 0
    throttled: int = 0


_TALLY: ContextVar[Tally | None] = ContextVar("migrator_tally", default=None)


@contextmanager
def tally() -> Iterator[Tally]:
    """Count the calls made inside the block (and in tasks it starts)."""
    counts = Tally()
    token = _TALLY.set(counts)
    try:
        yield counts
    finally:
        _TALLY.reset(token)


@dataclass(slots=True)
class Flow:
    """The limits, retry policy, budget and circuit shared by every call to one provider account."""

    provider: str = "provider"
    concurrency: int = 16
    max_attempts: int = 4
    qps: float | None = None
    read_qps: float | None = None
    write_qps: float | None = None
    retry_budget: int = 500
    park_after: float = 60.0
    """A throttle that asks to wait longer than this (s) is a quota used up: park, don't wait."""
    base_delay: float = 0.2
    max_delay: float = 20.0
    sleep: Sleep | None = None
    """How backoff waits (tests pass a fake); by default a wait the circuit's opening cuts short."""
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    limiter: anyio.CapacityLimiter = field(init=False)
    circuit: Circuit = field(init=False)
    budget: RetryBudget = field(init=False)
    rates: dict[str, AdaptiveRate] = field(init=False)
    totals: Tally = field(default_factory=Tally)
    _probe: anyio.Lock = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.concurrency)
        self.circuit = Circuit(self.provider)
        self.budget = RetryBudget(self.retry_budget)
        self._probe = anyio.Lock()
        self.rates = {}
        for name, quota in (("all", self.qps), ("read", self.read_qps), ("write", self.write_qps)):
            # Without a known quota an "all" class still adapts (paced from the first throttle).
            if quota is not None or name == "all":
                self.rates[name] = AdaptiveRate(None if quota is None else quota * HEADROOM, self.clock)

    @classmethod
    def of(cls, cfg: ProviderConfig) -> Flow:
        """The flow for a configured provider, with its effective limits."""
        limits = cfg.limits()
        return cls(
            provider=cfg.name,
            concurrency=cfg.concurrency,
            max_attempts=cfg.max_attempts,
            qps=limits.qps,
            read_qps=limits.read_qps,
            write_qps=limits.write_qps,
            retry_budget=cfg.retry_budget,
            park_after=cfg.park_after,
        )

    @property
    def retries(self) -> int:
        return self.totals.retries

    def backoff(self, retry: int, floor: float | None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)], but never below the server's ask."""
        delay = self.rng.uniform(0, min(self.max_delay, self.base_delay * 2**retry))
        return max(delay, floor or 0.0)

    def _classes(self, write: bool) -> list[AdaptiveRate]:
        own = self.rates.get("write" if write else "read")
        chosen = [r for r in (self.rates["all"], own) if r is not None]
        return sorted(chosen, key=lambda r: r.rate if r.rate is not None else float("inf"))

    @asynccontextmanager
    async def _slot(self, rates: list[AdaptiveRate]) -> AsyncIterator[None]:
        async with self.limiter:
            probe = None
            if not self.circuit.proven:
                await self._probe.acquire()
                if self.circuit.proven:
                    self._probe.release()
                else:
                    probe = self._probe
            try:
                # The slowest class first, so a slot taken in a faster one is not left unused
                # while waiting for the slower one. Pacing is on the real clock.
                for rate in rates:
                    if (wait := rate.reserve()) > 0:
                        await anyio.sleep(wait)
                self.circuit.check()
                yield
            finally:
                if probe is not None:
                    probe.release()

    async def call(
        self,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        write: bool = False,
        find: Callable[[], Awaitable[T | None]] | None = None,
    ) -> T:
        """Send ``fn`` under the account's limits and act on its answer as the error table says.

        ``find`` marks a create that is not idempotent (see the module docstring).
        """
        rates = self._classes(write)
        item = _TALLY.get()
        tallies = [self.totals] if item is None else [self.totals, item]
        attempt = 0  # tries that count towards max_attempts
        retried = 0  # every retry, for the backoff's exponent
        resigned = 0
        last_cost = 0
        uncertain: ProviderError | None = None  # an earlier try that may have landed
        try:
            while True:
                attempt += 1
                self.circuit.check()
                async with self._slot(rates):
                    sent = self.clock()
                    for t in tallies:
                        t.calls += 1
                    try:
                        result = await fn()
                    except ProviderError as exc:
                        error = exc
                    else:
                        self.circuit.answered()
                        for rate in rates:
                            rate.answered()
                        self.budget.refund(last_cost or 1)
                        return result
                action = error.action
                if not action.unexecuted:
                    uncertain = error
                if action is Action.THROTTLE and (error.retry_after or 0) > self.park_after:
                    action = Action.PARK
                if action is Action.THROTTLE:
                    for t in tallies:
                        t.throttled += 1
                    for rate in rates:
                        rate.throttled(sent)
                stopped = self._stops(action, error, resigned)
                if stopped is not None:
                    raise stopped from error
                if action.fails_item:
                    self.circuit.answered()
                    raise error
                if action is Action.SUSPECT:
                    raise error
                if action is Action.RESIGN:
                    resigned += 1
                    log.info("resign", call=what, code=error.code, request_id=error.request_id)
                    continue
                # retry, throttle, or a refresh that did not cure it
                if find is not None and not action.unexecuted:
                    found = await find()
                    if found is not None:
                        log.info("adopted", call=what, code=error.code, request_id=error.request_id)
                        return found
                if action is Action.THROTTLE:
                    attempt -= 1  # flow control, not a failure: bounded by the retry budget instead
                elif attempt >= self.max_attempts:
                    # Several of these in a row open the circuit for later calls; this one keeps its
                    # own answer, which leaves it unknown whether it landed.
                    self.circuit.gave_up(error)
                    raise error
                last_cost = cost_of(error.code)
                if not self.budget.take(last_cost):
                    stopped = self.circuit.open(
                        f"retry budget of {self.budget.capacity} spent; last: {error}"
                    )
                    if action.unexecuted:
                        raise stopped from error
                    raise error
                delay = self.backoff(retried, error.retry_after)
                retried += 1
                for t in tallies:
                    t.retries += 1
                log.info(
                    "retry",
                    call=what,
                    code=error.code,
                    retry=retried,
                    delay=round(delay, 3),
                    request_id=error.request_id,
                )
                await (self.sleep or self._wait)(delay)
                if (stopped := self.circuit.stopped) is not None:
                    # Stopped while this call waited: a refused call goes back unsent; one that may
                    # have landed keeps its own answer, so its item is looked up by the next run.
                    raise (stopped if action.unexecuted else error) from error
        except (ProviderStopped, ProviderError) as later:
            # An answer that proves only *this* try did nothing (a stop, a refused connection or
            # signature) after a try that may have landed must not send the item back as unsent:
            # it keeps that try's answer, so the next run looks it up before sending again. A
            # definite refusal of the request itself (``fail``) stands.
            refused = isinstance(later, ProviderError) and (
                later is uncertain or not later.action.unexecuted or later.action.fails_item
            )
            if uncertain is not None and not refused:
                raise uncertain from later
            raise

    async def _wait(self, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self.circuit.opened.wait()

    def _stops(self, action: Action, error: ProviderError, resigned: int) -> ProviderStopped | None:
        """The stop this answer causes, if it causes one."""
        if action is Action.STOP:
            return self.circuit.open(str(error))
        if action is Action.PARK:
            wait = error.retry_after if error.retry_after is not None else DEFAULT_PARK
            until = time.time() + wait
            return self.circuit.open(f"quota used up until {moment(until)} ({error})", until)
        if action is Action.SUSPECT:
            return self.circuit.suspect(error)
        if action is Action.RESIGN and resigned >= RESIGNS:
            return self.circuit.open(f"{error} again after signing afresh: is this machine's clock right?")
        return None
