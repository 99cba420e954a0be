"""The run: reconcile, then read -> translate -> (gate) -> submit, with the poller alongside.

Stages are joined by bounded anyio memory streams, so a slow provider holds back the reader and
memory stays flat. Every step is a committed transition in the store *before* the next side
effect: an item is ``submitting`` (durably) before its remote call, and leaves ``submitting`` in
the same transaction that records the remote job id. A run killed at any point therefore resumes
from the store: ``submitting`` rows are reconciled with the target before anything is sent, and
``polling`` rows are polled from their stored job ids by :class:`~migrator.engine.poller.Poller`.
A workflow that depends on others waits in the :class:`~migrator.engine.gate.Gate` until they
exist at the target, so upstreams are always created first, whatever the inventory's order.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from migrator.config import JobConfig, ProviderConfig
from migrator.engine.gate import Gate, Verdict
from migrator.engine.poller import Poller
from migrator.errors import ProviderError, TranslationError
from migrator.inventory import Entry
from migrator.providers.base import Provider, Rendered, UpstreamTarget
from migrator.store import TERMINAL, Change, Move, Part, PartMove, Record, Seen, State, Store

log = structlog.get_logger(__name__)

#: States in which the source record is not (re)submitted by a plain run.
SETTLED_OR_IN_FLIGHT = frozenset(
    {State.SUBMITTING, State.SUBMITTED, State.POLLING, State.DONE, State.SKIPPED, State.FAILED}
)
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
    name: str
    rendered: Rendered
    content_hash: str
    attempts: int


class PartLog:
    """An item's parts as the store holds them, written through (intent first) as they change."""

    def __init__(self, store: Store, job: str, run_id: int, key: str, parts: dict[str, Part]) -> None:
        self._store, self._job, self._run_id, self._key = store, job, run_id, key
        self._parts = parts

    def get(self, part: str) -> Part | None:
        return self._parts.get(part)

    async def begin(self, part: str) -> None:
        await self._store.apply(self._job, self._run_id, [PartMove(self._key, part, State.SUBMITTING)])
        self._parts[part] = Part(part, State.SUBMITTING, None)

    async def done(self, part: str, target_id: str) -> None:
        await self._store.apply(self._job, self._run_id, [PartMove(self._key, part, State.DONE, target_id)])
        self._parts[part] = Part(part, State.DONE, target_id)


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
    source: Callable[[], AsyncIterator[Entry]]
    observer: Observer = field(default_factory=_Silent)
    clock: Callable[[], float] = time.time
    run_id: int = 0
    in_flight: int = 0
    submits_done: anyio.Event = field(default_factory=anyio.Event)
    translated: anyio.Event = field(default_factory=anyio.Event)
    gate: Gate = field(init=False)
    _wake_tx: MemoryObjectSendStream[str] = field(init=False)
    _wake_rx: MemoryObjectReceiveStream[str] = field(init=False)

    def __post_init__(self) -> None:
        self.gate = Gate(self.store, self.job.name)
        self._wake_tx, self._wake_rx = anyio.create_memory_object_stream[str](float("inf"))

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
                self.settled,
            )
            entries_tx, entries_rx = anyio.create_memory_object_stream[Entry](BATCH * 2)
            work_tx, work_rx = anyio.create_memory_object_stream[Work](self.cfg.concurrency * 2)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.read, entries_tx)
                tg.start_soon(self.translate, entries_rx, work_tx.clone())
                tg.start_soon(self.release, work_tx)
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
            found = await self.provider.reconcile(item)
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
            async for entry in self.source():
                await tx.send(entry)
                unreported += 1
                if unreported == BATCH:
                    self.observer.read(unreported)
                    unreported = 0
                    await anyio.lowlevel.checkpoint()
            self.observer.read(unreported)

    async def translate(self, rx: MemoryObjectReceiveStream[Entry], tx: MemoryObjectSendStream[Work]) -> None:
        try:
            async with rx, tx:
                batch: list[Entry] = []
                async for entry in rx:
                    batch.append(entry)
                    if len(batch) >= BATCH or rx.statistics().current_buffer_used == 0:
                        await self._translate_batch(batch, tx)
                        batch = []
                if batch:
                    await self._translate_batch(batch, tx)
        finally:
            self.translated.set()

    async def _translate_batch(self, batch: list[Entry], tx: MemoryObjectSendStream[Work]) -> None:
        job = self.job.name
        existing = await self.store.items(job, [e.key for e in batch])
        target = self.job.target.provider
        changes: list[Change] = []
        ready: list[tuple[Entry, int]] = []
        first_seen: dict[str, str] = {}
        for entry in batch:
            row = existing.get(entry.key)
            if entry.key in first_seen or (row is not None and row.seen_run == self.run_id):
                first = first_seen.get(entry.key, row.origin if row else "?")
                message = f"{entry.origin}: key {entry.key!r} already read at {first}"
                changes.append(
                    Record(
                        entry.origin,
                        entry.name,
                        entry.origin,
                        target,
                        State.INVALID,
                        error_code="DuplicateKey",
                        error_message=message,
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
            changes.append(Record(entry.key, entry.name, entry.origin, target, State.PENDING, digest))
            ready.append((entry, row.attempts if row else 0))
        await self.store.apply(job, self.run_id, changes)
        for entry, attempts in ready:
            await self._admit(entry, attempts, tx)
        # Workflows parked on a reference that this batch has just recorded may now resolve.
        for parked in self.gate.waiting_on([*(e.key for e in batch), *(e.name for e in batch)]):
            self._wake_tx.send_nowait(parked.entry.key)

    async def _admit(self, entry: Entry, attempts: int, tx: MemoryObjectSendStream[Work]) -> None:
        """Render and send now, park until the upstreams exist, or fail behind a broken upstream."""
        assert entry.workflow is not None
        verdict = await self.gate.judge(entry.workflow) if entry.workflow.upstream else Verdict({})
        if verdict.blocked:
            await self._fail_pending(entry.key, entry.name, "UpstreamFailed", verdict.blocked)
        elif verdict.waits_on:
            self.gate.park(entry, attempts, verdict.waits_on)
        else:
            await self._render_and_send(entry, attempts, verdict.targets, tx)

    async def _render_and_send(
        self,
        entry: Entry,
        attempts: int,
        targets: dict[str, UpstreamTarget],
        tx: MemoryObjectSendStream[Work],
    ) -> None:
        workflow = entry.workflow
        assert workflow is not None
        key, name = entry.key, entry.name
        digest = workflow.content_hash()
        try:
            rendered = self.provider.render(workflow, self.job.target, targets)
        except TranslationError as exc:
            untranslatable = Record(
                key,
                name,
                entry.origin,
                self.job.target.provider,
                State.INVALID,
                digest,
                error_code="Untranslatable",
                error_message=str(exc),
            )
            await self.store.apply(self.job.name, self.run_id, [untranslatable])
            self.observer.settled(State.INVALID)
            await self.settled(key, name, State.INVALID)
            return
        recorded = Record(
            key,
            name,
            entry.origin,
            self.job.target.provider,
            State.RENDERED,
            digest,
            rendered.target_id,
            rendered.warnings,
        )
        await self.store.apply(self.job.name, self.run_id, [recorded])
        self.in_flight += 1
        await tx.send(Work(key, name, rendered, digest, attempts))

    async def _fail_pending(
        self, key: str, name: str, code: str, message: str, state: State = State.FAILED
    ) -> None:
        """A workflow that will not be submitted this run: behind a failed upstream, or in a cycle."""
        await self.store.apply(
            self.job.name,
            self.run_id,
            [
                Move(
                    key,
                    frozenset({State.PENDING}),
                    state,
                    {"error_code": code, "error_message": message},
                )
            ],
        )
        self.observer.settled(state)
        await self.settled(key, name, state)

    async def settled(self, key: str, name: str, state: State) -> None:
        """An item reached a final state this run: wake the workflows parked on it."""
        for parked in self.gate.waiting_on([key, name]):
            self._wake_tx.send_nowait(parked.entry.key)

    async def release(self, tx: MemoryObjectSendStream[Work]) -> None:
        """Feed parked workflows to the submit stage as their upstreams settle; end at quiescence."""
        async with tx, self._wake_rx:
            while True:
                woken: str | None = None
                with anyio.move_on_after(0.1):
                    woken = await self._wake_rx.receive()
                if woken is not None:
                    await self._recheck(woken, tx)
                    continue
                if not self.translated.is_set():
                    continue
                if not self.gate.parked:
                    return
                if self.in_flight or await self.store.next_poll_at(self.job.name) is not None:
                    continue
                if not await self._resolve_stalemate(tx):
                    return  # what is left waits on upstreams that did not settle: the next run

    async def _recheck(self, key: str, tx: MemoryObjectSendStream[Work]) -> None:
        parked = self.gate.get(key)
        if parked is None:
            return
        verdict = await self.gate.judge(parked.workflow)
        if verdict.blocked:
            self.gate.unpark(key)
            await self._fail_pending(key, parked.entry.name, "UpstreamFailed", verdict.blocked)
        elif verdict.waits_on:
            parked.waits_on = set(verdict.waits_on)
        else:
            self.gate.unpark(key)
            await self._render_and_send(parked.entry, parked.attempts, verdict.targets, tx)

    async def _resolve_stalemate(self, tx: MemoryObjectSendStream[Work]) -> bool:
        """Nothing is in flight: release external references, fail cycles. False if nothing moved."""
        outside, cyclic = await self.gate.stalemate()
        for parked, cycle in cyclic:
            self.gate.unpark(parked.entry.key)
            message = "cross-workflow dependency cycle: " + " -> ".join(cycle)
            await self._fail_pending(
                parked.entry.key, parked.entry.name, "DependencyCycle", message, State.INVALID
            )
        for parked in outside:  # their references are external now: they judge ready
            await self._recheck(parked.entry.key, tx)
        return bool(outside or cyclic)

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
                try:
                    await self.submit(work)
                finally:
                    self.in_flight -= 1

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
                )
            ],
        )
        parts = PartLog(self.store, job, self.run_id, key, await self.store.parts(job, key))
        try:
            result = await self.provider.submit(work.rendered, parts)
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
                    )
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
                await self.settled(key, work.name, State.FAILED)
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
            await self.settled(key, work.name, State.DONE)
        log.debug("submitted", key=key, target_id=result.target_id, remote_job_id=result.remote_job_id)
