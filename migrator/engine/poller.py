"""Polls asynchronous imports to completion, working only from the store.

Nothing about an in-flight job lives in memory: each round asks the store which ``polling``
rows are due (``next_poll_at``), polls them, and writes back the outcome or the next poll time
(``polls``-based backoff) and fails jobs past ``deadline_at``. A restarted process therefore
resumes polling exactly where the last one stopped, with the job ids it stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import structlog
from structlog.contextvars import bound_contextvars

from migrator.config import PollPolicy
from migrator.engine.flow import tally
from migrator.errors import ProviderError, ProviderStopped
from migrator.providers.base import JobStatus, Polled, Provider
from migrator.store import Item, Move, State, Store

if TYPE_CHECKING:
    from migrator.engine.pipeline import Observer

log = structlog.get_logger(__name__)
POLLING = frozenset({State.POLLING})
IDLE = 0.25  # longest nap between looks at the store, so newly submitted jobs are seen promptly


@dataclass(slots=True)
class Poller:
    job: str
    run_id: int
    policy: PollPolicy
    provider: Provider
    store: Store
    observer: Observer
    clock: Callable[[], float]
    submits_done: anyio.Event
    on_settled: Callable[[str, str, State], Awaitable[None]]

    async def run(self) -> None:
        """Until the submit stage has finished and no row is left in ``polling``."""
        batch = max(4, self.provider.flow.concurrency * 4)
        circuit = self.provider.flow.circuit
        while circuit.stopped is None:  # once stopped, `polling` rows wait for the next run
            finished = self.submits_done.is_set()  # read before the query: see the docstring
            now = self.clock()
            due = await self.store.due_polls(self.job, now, batch)
            if due:
                async with anyio.create_task_group() as tg:
                    for item in due:
                        tg.start_soon(self.poll, item)
                continue
            nxt = await self.store.next_poll_at(self.job)
            if nxt is None and finished:
                return
            await anyio.sleep(IDLE if nxt is None else min(max(nxt - now, 0.0), IDLE))

    async def poll(self, item: Item) -> None:
        assert item.remote_job_id is not None
        now = self.clock()
        polls = item.polls + 1
        job = item.remote_job_id
        with tally() as cost, bound_contextvars(key=item.key):
            try:
                result: Polled | ProviderError = await self.provider.poll(job)
            except ProviderStopped:
                return  # still `polling`, with its job id: the next run polls it
            except ProviderError as exc:
                result = exc
        done = {"polls": polls, "retries": item.retries + cost.retries}
        if isinstance(result, ProviderError) and result.action.fails_item:
            await self._finish(item, State.FAILED, done, result.code, f"polling job {job}: {result.message}")
        elif isinstance(result, ProviderError) or result.status is JobStatus.RUNNING:
            # Still running, or no answer this time (a retryable error): the deadline holds for
            # both, or a provider that answers only errors would be polled for ever.
            note = f"{result.code}: {result.message}" if isinstance(result, ProviderError) else None
            if item.deadline_at is not None and now >= item.deadline_at:
                how = f"not known to have finished ({note})" if note else "still running"
                await self._finish(
                    item,
                    State.FAILED,
                    done,
                    "AsyncJobTimeout",
                    f"async job {job} {how} after {self.policy.deadline:g}s ({polls} polls); "
                    "`migrator retry` submits it again",
                )
            else:
                await self._again(item, done, now, note)
        elif result.status is JobStatus.SUCCESS:
            await self._finish(item, State.DONE, done)
        else:
            code = result.code or "AsyncJobFailed"
            await self._finish(item, State.FAILED, done, code, f"async job {job} failed: {result.error}")

    async def _again(self, item: Item, done: dict[str, int], now: float, note: str | None) -> None:
        next_poll = now + self.policy.delay(done["polls"])
        await self.store.apply(
            self.job,
            self.run_id,
            [Move(item.key, POLLING, State.POLLING, {**done, "next_poll_at": next_poll}, detail=note)],
        )

    async def _finish(
        self,
        item: Item,
        state: State,
        done: dict[str, int],
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        key = item.key
        fields = {**done, "next_poll_at": None, "error_code": code, "error_message": message}
        await self.store.apply(self.job, self.run_id, [Move(key, POLLING, state, fields)])
        if state is State.FAILED:
            log.warning("async job failed", key=key, code=code, reason=message)
        self.observer.settled(state)
        await self.on_settled(key, item.name, state)
