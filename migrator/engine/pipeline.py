"""The run: reconcile, then read -> translate -> submit, with the poller alongside.

Stages are joined by bounded anyio memory streams, so a slow provider holds back the reader and
memory stays flat. Every step is a committed transition in the store *before* the next side
effect: an item is ``submitting`` (durably) before its remote call, and leaves ``submitting`` in
the same transaction that records the remote job id. A run killed at any point therefore resumes
from the store: ``submitting`` rows are reconciled with the target before anything is sent, and
``polling`` rows are polled from their stored job ids by :class:`~migrator.engine.poller.Poller`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from migrator import inventory
from migrator.config import JobConfig, ProviderConfig
from migrator.engine.poller import Poller
from migrator.errors import ProviderError, TranslationError
from migrator.inventory import Entry
from migrator.providers.base import Provider, Rendered
from migrator.store import TERMINAL, Change, Move, Record, Seen, State, Store

log = structlog.get_logger(__name__)

#: States in which the source record is not (re)submitted by a plain run.
SETTLED_OR_IN_FLIGHT = frozenset(
    {State.SUBMITTING, State.SUBMITTED, State.POLLING, State.DONE, State.SKIPPED, State.FAILED}
)
RESUBMITTABLE = frozenset({State.PENDING, State.RENDERED, State.INVALID})
BATCH = 200


class Observer(Protocol):
    """Receives progress as it happens (the CLI draws it; tests may count it)."""

    def read(self, n: int) -> None: ...

    def settled(self, state: State, n: int = 1) -> None: ...


class _Silent:
    def read(self, n: int) -> None:
        pass

    def settled(self, state: State, n: int = 1) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Work:
    key: str
    rendered: Rendered
    content_hash: str
    attempts: int


@dataclass(slots=True)
class Outcome:
    run_id: int
    counts: dict[str, int]
    interrupted: bool = False
    retries: int = 0

    @property
    def unsettled(self) -> int:
        return sum(n for s, n in self.counts.items() if State(s) not in TERMINAL)

    @property
    def exit_code(self) -> int:
        """3 when work is left for the next run (the provider stopped answering), else 1 or 0."""
        if self.interrupted or self.unsettled:
            return 3
        return 1 if self.counts["failed"] or self.counts["invalid"] else 0


@dataclass(slots=True)
class Pipeline:
    job: JobConfig
    cfg: ProviderConfig
    provider: Provider
    store: Store
    observer: Observer = field(default_factory=_Silent)
    clock: Callable[[], float] = time.time
    run_id: int = 0
    submits_done: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> Outcome:
        self.run_id = await self.store.start_run(self.job.name, self.job.mode, self.job.target.provider)
        log.info("run started", job=self.job.name, run=self.run_id, target=self.cfg.name)
        outcome = "interrupted"
        try:
            await self.reconcile()
            poller = Poller(
                self.job.name,
                self.run_id,
                self.cfg.poll,
                self.provider,
                self.store,
                self.observer,
                self.clock,
                self.submits_done,
            )
            entries_tx, entries_rx = anyio.create_memory_object_stream[Entry](BATCH * 2)
            work_tx, work_rx = anyio.create_memory_object_stream[Work](self.cfg.concurrency * 2)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.read, entries_tx)
                tg.start_soon(self.translate, entries_rx, work_tx)
                tg.start_soon(self.submit_all, work_rx)
                tg.start_soon(poller.run)
            counts = await self.store.counts(self.job.name)
            outcome = "completed"
            return Outcome(self.run_id, counts, retries=self.provider.flow.retries)
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.finish_run(self.run_id, outcome)
                log.info("run ended", job=self.job.name, run=self.run_id, outcome=outcome)

    # --- reconciliation -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Settle rows a previous process left in ``submitting`` before anything new is sent."""
        for item in await self.store.in_states(self.job.name, [State.SUBMITTING]):
            found = await self.provider.reconcile(item.key, item.target_id) if item.target_id else None
            now = self.clock()
            changes: list[Change]
            if found is None:
                changes = [
                    Move(
                        item.key,
                        frozenset({State.SUBMITTING}),
                        State.PENDING,
                        detail="reconciled: not found at the target; will be submitted again",
                    )
                ]
            elif found.remote_job_id:
                changes = [
                    Move(
                        item.key,
                        frozenset({State.SUBMITTING}),
                        State.SUBMITTED,
                        {"target_id": found.target_id, "remote_job_id": found.remote_job_id},
                        detail="reconciled: async job found at the target",
                    ),
                    self._start_polling(item.key, now),
                ]
            else:
                changes = [
                    Move(
                        item.key,
                        frozenset({State.SUBMITTING}),
                        State.SUBMITTED,
                        {"target_id": found.target_id},
                        detail="reconciled: found at the target",
                    ),
                    Move(item.key, frozenset({State.SUBMITTED}), State.DONE),
                ]
            await self.store.apply(self.job.name, self.run_id, changes)
            log.info("reconciled", key=item.key, found=found is not None)

    def _start_polling(self, key: str, now: float) -> Move:
        return Move(
            key,
            frozenset({State.SUBMITTED}),
            State.POLLING,
            {
                "next_poll_at": now + self.cfg.poll.delay(0),
                "deadline_at": now + self.cfg.poll.deadline,
                "polls": 0,
            },
        )

    # --- stages -------------------------------------------------------------------------------

    async def read(self, tx: MemoryObjectSendStream[Entry]) -> None:
        async with tx:
            unreported = 0
            for entry in inventory.read(self.job.source.paths):
                await tx.send(entry)
                unreported += 1
                if unreported == BATCH:
                    self.observer.read(unreported)
                    unreported = 0
                    await anyio.lowlevel.checkpoint()
            self.observer.read(unreported)

    async def translate(self, rx: MemoryObjectReceiveStream[Entry], tx: MemoryObjectSendStream[Work]) -> None:
        async with rx, tx:
            batch: list[Entry] = []
            async for entry in rx:
                batch.append(entry)
                if len(batch) >= BATCH or rx.statistics().current_buffer_used == 0:
                    await self._translate_batch(batch, tx)
                    batch = []
            if batch:
                await self._translate_batch(batch, tx)

    async def _translate_batch(self, batch: list[Entry], tx: MemoryObjectSendStream[Work]) -> None:
        job = self.job.name
        existing = await self.store.items(job, [e.key for e in batch])
        target = self.job.target.provider
        changes: list[Change] = []
        work: list[Work] = []
        first_seen: dict[str, str] = {}
        for entry in batch:
            row = existing.get(entry.key)
            if entry.key in first_seen or (row is not None and row.seen_run == self.run_id):
                first = first_seen.get(entry.key, row.origin if row else "?")
                changes.append(
                    Record(
                        entry.origin,
                        entry.name,
                        entry.origin,
                        target,
                        State.INVALID,
                        error_code="DuplicateKey",
                        error_message=f"{entry.origin}: key {entry.key!r} already read at {first}",
                    )
                )
                self.observer.settled(State.INVALID)
                continue
            first_seen[entry.key] = entry.origin
            if row is not None and row.state in SETTLED_OR_IN_FLIGHT:
                changes.append(Seen(entry.key))
                if row.state in TERMINAL:
                    self.observer.settled(row.state)
                continue
            if entry.workflow is None:
                changes.append(
                    Record(
                        entry.key,
                        entry.name,
                        entry.origin,
                        target,
                        State.INVALID,
                        error_code="InvalidInput",
                        error_message=entry.error,
                    )
                )
                self.observer.settled(State.INVALID)
                continue
            digest = entry.workflow.content_hash()
            try:
                rendered = self.provider.render(entry.workflow, self.job.target)
            except TranslationError as exc:
                changes.append(
                    Record(
                        entry.key,
                        entry.name,
                        entry.origin,
                        target,
                        State.INVALID,
                        digest,
                        error_code="Untranslatable",
                        error_message=str(exc),
                    )
                )
                self.observer.settled(State.INVALID)
                continue
            changes.append(
                Record(
                    entry.key,
                    entry.name,
                    entry.origin,
                    target,
                    State.RENDERED,
                    digest,
                    rendered.target_id,
                    rendered.warnings,
                )
            )
            work.append(Work(entry.key, rendered, digest, row.attempts if row else 0))
        await self.store.apply(job, self.run_id, changes)
        for item in work:
            await tx.send(item)

    async def submit_all(self, rx: MemoryObjectReceiveStream[Work]) -> None:
        try:
            async with rx, anyio.create_task_group() as tg:
                for _ in range(self.cfg.concurrency):
                    tg.start_soon(self._submit_worker, rx.clone())
        finally:
            self.submits_done.set()

    async def _submit_worker(self, rx: MemoryObjectReceiveStream[Work]) -> None:
        async with rx:
            async for work in rx:
                await self.submit(work)

    async def submit(self, work: Work) -> None:
        job, key = self.job.name, work.key
        await self.store.apply(
            job,
            self.run_id,
            [
                Move(
                    key,
                    frozenset({State.RENDERED}),
                    State.SUBMITTING,
                    {"attempts": work.attempts + 1, "target_id": work.rendered.target_id},
                ),
            ],
        )
        try:
            result = await self.provider.submit(work.rendered)
        except ProviderError as exc:
            # Without a definite answer (throttled, 5xx, timeout, reset) after every attempt the
            # call may have landed: the item is not failed but stays `submitting`, and the next run
            # looks it up at the target before sending anything.
            unanswered = exc.retryable
            message = exc.message + (f" (request {exc.request_id})" if exc.request_id else "")
            await self.store.apply(
                job,
                self.run_id,
                [
                    Move(
                        key,
                        frozenset({State.SUBMITTING}),
                        State.SUBMITTING if unanswered else State.FAILED,
                        {"error_code": exc.code, "error_message": message},
                        detail=f"no definite answer ({exc.code}); reconciled on the next run"
                        if unanswered
                        else None,
                    ),
                ],
            )
            log.warning(
                "submit unanswered" if unanswered else "submit failed",
                key=key,
                code=exc.code,
                request_id=exc.request_id,
            )
            if not unanswered:
                self.observer.settled(State.FAILED)
            return
        submitted = Move(
            key,
            frozenset({State.SUBMITTING}),
            State.SUBMITTED,
            {
                "target_id": result.target_id,
                "remote_job_id": result.remote_job_id,
                "submitted_hash": work.content_hash,
                "error_code": None,
                "error_message": None,
            },
        )
        if result.remote_job_id:
            await self.store.apply(job, self.run_id, [submitted, self._start_polling(key, self.clock())])
        else:
            await self.store.apply(
                job, self.run_id, [submitted, Move(key, frozenset({State.SUBMITTED}), State.DONE)]
            )
            self.observer.settled(State.DONE)
        log.debug("submitted", key=key, target_id=result.target_id, remote_job_id=result.remote_job_id)
