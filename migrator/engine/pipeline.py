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

import hashlib
import json
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from structlog.contextvars import bound_contextvars

from migrator.config import JobConfig, ProviderConfig, TargetConfig
from migrator.engine.flow import tally
from migrator.engine.frontier import Frontier
from migrator.engine.gate import Gate, Verdict
from migrator.engine.poller import Poller
from migrator.engine.source import Inventory, Source
from migrator.errors import NAME_TAKEN, Action, ProviderError, ProviderStopped, TranslationError
from migrator.inventory import Entry
from migrator.log import moment
from migrator.model import Workflow
from migrator.providers.base import Provider, Rendered, UpstreamTarget
from migrator.store import (
    TERMINAL,
    Change,
    Item,
    Move,
    Part,
    PartMove,
    Reached,
    Record,
    RunCost,
    Seen,
    State,
    Store,
)

log = structlog.get_logger(__name__)

IN_FLIGHT = frozenset({State.SUBMITTING, State.SUBMITTED, State.POLLING})
#: States in which the source record is not (re)submitted by a migration.
SETTLED_OR_IN_FLIGHT = IN_FLIGHT | {State.DONE, State.SKIPPED, State.FAILED, State.ORPHANED}
#: Said of a landed workflow whose new version is not sent: what is at the target stays.
KEPT_AT_TARGET = "; the target keeps the version last submitted"
#: States of an item that exists at the target as a run left it (a sync compares it with the source).
LANDED = frozenset({State.DONE, State.SKIPPED, State.ORPHANED})
BATCH = 200
#: Workflows rendered and checkpointed together before they go to the submit workers. Rendering
#: a whole batch at once held the event loop for a tenth of a second, while the workers, and the
#: target behind them, waited; a quarter of it keeps both busy for the same commits per call.
SEND_BATCH = 50
UNCHANGED = "unchanged since last submitted"


class Observer(Protocol):
    """Receives progress as it happens (the CLI draws it; tests may count it).

    ``finished``: the source is read to its end (the total is known). ``earlier``: an item an
    earlier run settled, counted as it is read again (no work this run, so no part of a rate).
    """

    def read(self, n: int, *, finished: bool = False) -> None: ...

    def settled(self, state: State, n: int = 1, *, earlier: bool = False) -> None: ...


class _Silent:
    def read(self, n: int, *, finished: bool = False) -> None:
        pass

    def settled(self, state: State, n: int = 1, *, earlier: bool = False) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Work:
    key: str
    name: str
    rendered: Rendered
    content_hash: str
    attempts: int
    retries: int
    update: bool = False
    upstreams: tuple[UpstreamTarget, ...] = ()
    """The upstreams it was rendered against: its links at the target, which may name them."""


@dataclass(frozen=True, slots=True)
class Compared:
    """A sync's verdict on a known item: its changes, and the state it settles in (None: resubmit)."""

    changes: list[Change]
    settled: State | None = None
    rejudge: bool = False
    """Failed behind its upstream: sent again only if that upstream no longer blocks it."""
    resolve: bool = False
    """Unchanged, with upstreams: skipped, or updated if they now resolve to other workflows."""


class Digester:
    """The digests a sync compares: what was rendered, and so what the target holds.

    A workflow's digest is its content and the job's ``[target]`` settings. The settings are
    part of it because they shape the translation: a changed folder, kind override or owner
    mapping must update every workflow it touches at the next sync, though no source record
    changed.

    A workflow with upstream workflows is rendered with what its references resolve to (an
    upstream's key, name and target id, or nothing for one outside the job), and that can change
    while its own record does not: an upstream that arrives in the source a night later, or that
    comes back under a new source id with the same name. So what it was rendered with is part of
    the digest it is submitted with: ``content+resolution``. The content part alone says whether
    the record changed; the whole says whether the rendering would.
    """

    def __init__(self, target: TargetConfig) -> None:
        # Hashed once: the digest is asked for at several stages, and mapping tables can be large.
        dumped = json.dumps(target.model_dump(mode="json"), sort_keys=True)
        self._settings = hashlib.sha256(dumped.encode()).hexdigest()

    def __call__(self, workflow: Workflow) -> str:
        """The content part: the record and the ``[target]`` settings."""
        return hashlib.sha256(f"{workflow.content_hash()}\n{self._settings}".encode()).hexdigest()

    def rendered(self, workflow: Workflow, targets: Mapping[str, UpstreamTarget]) -> str:
        """The digest of ``workflow`` rendered with ``targets`` (its resolvable references)."""
        content = self(workflow)
        refs = workflow.upstream_workflows()
        if not refs:
            return content
        resolved = [
            [ref, t.key, t.name, t.target_id, t.external] if (t := targets.get(ref)) else [ref]
            for ref in refs
        ]
        return f"{content}+{hashlib.sha256(json.dumps(resolved).encode()).hexdigest()}"


def content_part(digest: str | None) -> str | None:
    """A stored digest's content part (see :class:`Digester`)."""
    return None if digest is None else digest.partition("+")[0]


def resolved_otherwise(submitted: str) -> str:
    """Why a workflow unchanged but for what its upstreams resolve to is updated."""
    if "+" not in submitted:
        return "submitted by a release that did not digest what its upstreams resolved to: updated once"
    return "its upstreams resolve to other workflows now: updated at the target"


def as_last_rendered(row: Item, digest: str) -> bool:
    """Whether ``row`` is at the target with content ``digest`` unchanged since it was submitted.

    For a workflow with upstreams that is not yet enough to skip it: what its references resolve
    to now is compared when it is rendered (:meth:`Digester.rendered`).
    """
    return row.state in LANDED and bool(row.target_id) and content_part(row.submitted_hash) == digest


def compare(row: Item, workflow: Workflow, digester: Digester) -> Compared | None:
    """Sync: what the source's current version of a known item calls for (None: as a migration).

    An item at the target as last submitted is ``skipped`` without a call, or, if it has
    upstreams, compared again once they resolve; one whose content changed, or that came back
    after a prune, goes back to ``pending`` and is submitted as an update of what exists; a
    failed one is tried again once its source changed, if it failed behind an upstream, or on a
    taken name (else ``migrator retry`` decides). In-flight items are left to reconciliation and the poller.
    """
    key, digest, upstreams = row.key, digester(workflow), bool(workflow.upstream)
    legacy = row.state in LANDED and row.target_id and row.submitted_hash == workflow.content_hash()
    if legacy and not upstreams:
        # Submitted by a version that digested the workflow alone: unchanged, and from now on
        # digested with the [target] settings, assumed the same as when it was submitted. (One
        # with upstreams is updated once: what they resolved to then is not known.)
        fields: dict[str, object] = {"submitted_hash": digest, "content_hash": digest}
        again = "unchanged since last submitted (digest carried over)"
        return Compared([Move(key, frozenset({row.state}), State.SKIPPED, fields, detail=again), Seen(key)],
                        State.SKIPPED)  # fmt: skip
    if as_last_rendered(row, digest):
        if upstreams and row.state is State.ORPHANED:
            # Back in the source: no longer orphaned while it waits to be compared (a --prune
            # at the end of this run deletes what is orphaned).
            back = Move(
                key, frozenset({row.state}), State.SKIPPED, detail=f"in the source again, {UNCHANGED}"
            )
            return Compared([back, Seen(key)], resolve=True)
        if upstreams:
            return Compared([Seen(key)], resolve=True)
        if row.state is State.SKIPPED:
            return Compared([Seen(key)], State.SKIPPED)
        unchanged = Move(key, frozenset({row.state}), State.SKIPPED, detail=UNCHANGED)
        return Compared([unchanged, Seen(key)], State.SKIPPED)
    if row.state in LANDED:
        why = (
            "changed in the source: updated at the target"
            if row.target_id and row.submitted_hash
            else "in the source again: created at the target"
        )
    elif row.state is State.FAILED and content_part(row.content_hash) != digest:
        why = "changed in the source since it failed: submitted again"
    elif row.state is State.FAILED and row.error_code == NAME_TAKEN:
        # Refused a name another object held: it may have been freed since (by hand, a prune).
        why = "failed on a name another object held: submitted again"
    elif row.state is State.FAILED and row.error_code == "UpstreamFailed":
        # Refused for another workflow's sake (broken, or a name two workflows had), which may
        # be fixed by now: judged again (the caller asks the gate first, so as not to record a
        # pending and a failure each night while the upstream is still broken).
        fixed = "failed behind its upstream, which no longer blocks it: judged again"
        return Compared(
            [Move(key, frozenset({row.state}), State.PENDING, {"error_code": None}, detail=fixed)],
            rejudge=True,
        )
    else:
        return None
    return Compared([Move(key, frozenset({row.state}), State.PENDING, {"error_code": None}, detail=why)])


class _Ready(NamedTuple):
    """A workflow whose upstreams all exist at the target: it can be rendered now."""

    entry: Entry
    row: Item | None
    targets: dict[str, UpstreamTarget]


class PartLog:
    """An item's parts as the store holds them, written through (intent first) as they change."""

    def __init__(self, store: Store, job: str, run_id: int, key: str, parts: dict[str, Part]) -> None:
        self._store, self._job, self._run_id, self.key = store, job, run_id, key
        self._parts = parts

    def get(self, part: str) -> Part | None:
        return self._parts.get(part)

    async def owner(self, target_id: str) -> str | None:
        return await self._store.part_owner(target_id, self._job, self.key)

    async def begin(self, part: str) -> None:
        since = self._store.now()
        await self._store.apply(self._job, self._run_id, [PartMove(self.key, part, State.SUBMITTING)])
        self._parts[part] = Part(part, State.SUBMITTING, None, since=since)

    async def done(self, part: str, target_id: str, content_hash: str | None = None) -> None:
        move = PartMove(self.key, part, State.DONE, target_id, content_hash)
        await self._store.apply(self._job, self._run_id, [move])
        self._parts[part] = Part(part, State.DONE, target_id, content_hash)

    def known(self) -> Mapping[str, Part]:
        return self._parts

    async def gone(self, part: str) -> None:
        await self._store.apply(self._job, self._run_id, [PartMove(self.key, part, State.ORPHANED)])
        self._parts[part] = Part(part, State.ORPHANED, None)


@dataclass(slots=True)
class Outcome:
    run_id: int
    counts: dict[str, int]
    interrupted: bool = False
    cost: RunCost = field(default_factory=RunCost)
    stopped: ProviderStopped | None = None
    #: Sync: items found gone from the source this run, and those deleted at the target (--prune).
    orphaned: list[Item] = field(default_factory=list)
    pruned: list[Item] = field(default_factory=list)
    #: Orphans the target refused to delete (--prune), this night's or an earlier one's.
    refused: list[Item] = field(default_factory=list)

    @property
    def unsettled(self) -> int:
        return sum(n for s, n in self.counts.items() if State(s) not in TERMINAL)

    @property
    def exit_code(self) -> int:
        """3 when work is left for the next run (the provider stopped or stopped answering), else 1 or 0."""
        if self.interrupted or self.stopped is not None or self.unsettled:
            return 3
        return 1 if self.counts["failed"] or self.counts["invalid"] else 0


@dataclass(slots=True)
class Pipeline:
    job: JobConfig
    cfg: ProviderConfig
    provider: Provider
    store: Store
    source: Source
    observer: Observer = field(default_factory=_Silent)
    clock: Callable[[], float] = time.time
    prune: bool = False
    run_id: int = 0
    in_flight: int = 0
    settlements: int = 0
    """Items settled so far: a judge that saw it change may have read a stale upstream."""
    read_count: int = 0
    frontier: Frontier | None = None
    """A migration of a canonical inventory reads it through its read frontier."""
    submits_done: anyio.Event = field(default_factory=anyio.Event)
    translated: anyio.Event = field(default_factory=anyio.Event)
    gate: Gate = field(init=False)
    digest: Digester = field(init=False)
    _wake_tx: MemoryObjectSendStream[str] = field(init=False)
    _wake_rx: MemoryObjectReceiveStream[str] = field(init=False)
    _deferred: list[tuple[Work, ProviderError]] = field(default_factory=list)
    """Submits refused a name another object holds, sent again once the rest has settled."""
    _round: int | None = None
    """``settlements`` when the last round of deferred submits was sent."""
    _orphaned: list[Item] | None = None
    """What this sync orphaned, once :meth:`_sweep` has marked it (the source is read in full
    by then, so once a run is enough)."""
    _pruned: list[Item] = field(default_factory=list)
    """What :meth:`_sweep` pruned so far this run."""
    _refused: dict[str, Item] = field(default_factory=dict)
    """What the last prune of each orphan found the target refusing to delete, by key."""

    def __post_init__(self) -> None:
        self.gate = Gate(self.store, self.job.name, self.job.target.mappings.upstreams)
        self.digest = Digester(self.job.target)
        self._wake_tx, self._wake_rx = anyio.create_memory_object_stream[str](float("inf"))

    async def run(self) -> Outcome:
        self.run_id = await self.store.start_run(self.job.name, self.job.mode, self.job.target.provider)
        self.gate.start(
            self.run_id, sync=self.job.mode == "sync", reading=lambda: not self.translated.is_set()
        )
        log.info("run started", job=self.job.name, run=self.run_id, target=self.cfg.name)
        outcome = "interrupted"
        flow = self.provider.flow
        try:
            until = await self.store.parked_until(self.job.name)
            if until is not None and until > time.time():
                reason = f"quota used up until {moment(until)} (met by an earlier run); nothing sent"
                flow.circuit.open(reason, until)
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
            await self._sweep()
            orphaned, pruned, refused = self._orphaned or [], self._pruned, list(self._refused.values())
            counts = await self.store.counts(self.job.name)
            stopped = flow.circuit.stopped
            outcome = "completed" if stopped is None else "stopped"
            return Outcome(
                self.run_id,
                counts,
                cost=self._cost(),
                stopped=stopped,
                orphaned=orphaned,
                pruned=pruned,
                refused=refused,
            )
        finally:
            self._wake_tx.close()  # the wake channel lives as long as the run
            self._wake_rx.close()
            with anyio.CancelScope(shield=True):
                await self.store.finish_run(self.run_id, outcome, self._cost())
                log.info("run ended", job=self.job.name, run=self.run_id, outcome=outcome)

    async def _sweep(self, only: Callable[[Item], bool] | None = None) -> None:
        """A sync's orphans (what the source, read in full, no longer has), and with ``--prune``
        those deleted at the target (``only`` those it accepts): at the run's end, and before
        each round of deferred submits (see :meth:`_in_the_way`)."""
        if self.job.mode != "sync":
            return
        if self._orphaned is None:
            self._orphaned = await self.orphan()
        if self.prune and not self.stopped:
            pruned, refused = await self.prune_orphans(only)  # a pruned orphan is not pruned again
            self._pruned += pruned
            for item in pruned:
                self._refused.pop(item.key, None)
            self._refused.update((item.key, item) for item in refused)

    async def _in_the_way(self) -> Callable[[Item], bool]:
        """The orphans pruned before a round of deferred submits: those whose object holds a name
        one of them wants (the refusal says which), for a removed workflow's object may hold it.
        Not one a deferred submit was rendered against, or a held workflow resolves a reference
        to (as the gate resolves it): its links name it, and would be refused or, worse, bind to
        the new object of that name."""
        holders = {exc.holder for _, exc in self._deferred}
        linked = [t for work, _ in self._deferred for t in work.upstreams]
        for key in self.gate.held_keys():
            held = self.gate.get(key)
            if held is not None:
                linked += (await self.gate.judge(held.workflow)).targets.values()
        # A mapped upstream's key is the job file's reference, not an item's: its name is the link.
        keys = {t.key for t in linked if not t.external}
        names = {t.name for t in linked}

        return lambda item: item.target_id in holders and item.key not in keys and item.name not in names

    def _cost(self) -> RunCost:
        flow = self.provider.flow
        stopped = flow.circuit.stopped
        totals = flow.totals
        if stopped is None:
            return RunCost(totals.calls, totals.retries, totals.throttled)
        return RunCost(totals.calls, totals.retries, totals.throttled, stopped.reason, stopped.until)

    @property
    def stopped(self) -> bool:
        """The provider's circuit is open: nothing more is sent this run."""
        return self.provider.flow.circuit.stopped is not None

    # --- reconciliation -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Settle rows a previous process left in ``submitting`` before anything new is sent."""
        for item in await self.store.in_states(self.job.name, [State.SUBMITTING]):
            if item.submitted_hash is not None:
                # A sync's update was under way: the object exists whether or not the update
                # landed, so finding it proves nothing. Updates are safe to send again.
                again = "an update was under way; will be sent again"
                await self.store.apply(
                    self.job.name,
                    self.run_id,
                    [Move(item.key, frozenset({State.SUBMITTING}), State.PENDING, detail=again)],
                )
                continue
            try:
                with tally() as cost, bound_contextvars(key=item.key):
                    found = await self.provider.reconcile(item)
            except ProviderStopped:
                return  # left in `submitting`: the next run reconciles it
            now = self.clock()
            # What was found is what the interrupted submit sent: the content rendered for it.
            fields = {"retries": item.retries + cost.retries, "submitted_hash": item.content_hash}
            changes: list[Change]
            if found is None:
                changes = [
                    Move(
                        item.key,
                        frozenset({State.SUBMITTING}),
                        State.PENDING,
                        {"retries": fields["retries"]},
                        detail="reconciled: not found at the target; will be submitted again",
                    )
                ]
            elif found.remote_job_id:
                changes = [
                    Move(
                        item.key,
                        frozenset({State.SUBMITTING}),
                        State.SUBMITTED,
                        {"target_id": found.target_id, "remote_job_id": found.remote_job_id, **fields},
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
                        {"target_id": found.target_id, **fields},
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

    # --- sync: what the source no longer has ------------------------------------------------

    async def orphan(self) -> list[Item]:
        """Mark ``orphaned`` what the source, read in full by this run, no longer has.

        An empty source orphans nothing: a source that reads as empty is far more often a wrong
        path or a failed export than a platform with every workflow deleted, and a ``--prune``
        after it would empty the target.
        """
        job = self.job.name
        unseen = await self.store.unseen(job, self.run_id, IN_FLIGHT | {State.ORPHANED})
        if unseen and not self.read_count:
            log.warning("source is empty: nothing orphaned", job=job, known=len(unseen))
            return []
        moves = [
            Move(
                item.key,
                frozenset({item.state}),
                State.ORPHANED,
                detail="gone from the source" + ("" if item.target_id else "; nothing at the target"),
            )
            for item in unseen
        ]
        await self.store.apply_in_batches(job, self.run_id, moves)
        if unseen:
            self.observer.settled(State.ORPHANED, len(unseen))
            log.warning("orphaned", job=job, count=len(unseen), keys=[i.key for i in unseen[:20]])
        return unseen

    async def prune_orphans(
        self, only: Callable[[Item], bool] | None = None
    ) -> tuple[list[Item], list[Item]]:
        """Delete at the target what orphaned items left there (``--prune``), saying what first:
        what was deleted, and what the target refused to delete.

        Downstream workflows must go before the upstreams they depend on, and an orphan does not
        tell its dependencies any more: refused deletes are tried again while a pass makes
        progress. What stays refused keeps its error and its ``target_id`` (and is tried again
        by the next sweep). ``only``: the orphans it accepts.
        """
        job = self.job.name
        doomed: list[tuple[Item, dict[str, Part]]] = []
        for item in await self.store.in_states(job, [State.ORPHANED]):
            if item.seen_run == self.run_id:
                continue  # read this run: in the source, whatever its state says
            if only is not None and not only(item):
                continue
            parts = await self.store.parts(job, item.key)
            if item.target_id or any(p.state is not State.ORPHANED for p in parts.values()):
                doomed.append((item, parts))
        if not doomed:
            return [], []
        log.warning(
            "pruning: deleting orphaned workflows at the target",
            job=job,
            target=self.cfg.name,
            count=len(doomed),
            workflows=[f"{i.name} ({i.target_id or 'partial'})" for i, _ in doomed],
        )
        # The intent first, as for a submit: a delete may stop part-way (EMR deletes the flow, then
        # its jobs), be refused half done, or the run be killed before the outcome is recorded.
        # So each part is in doubt (``submitting``: looked up by name before it is made again) and
        # the item loses its submitted digest: one that comes back to the source unchanged is
        # made again where it is missing, not skipped as "unchanged since last submitted".
        intents: list[Change] = []
        for item, parts in doomed:
            intents += [PartMove(item.key, p, State.SUBMITTING) for p in parts]
            intents.append(
                Move(
                    item.key,
                    frozenset({State.ORPHANED}),
                    State.ORPHANED,
                    {"submitted_hash": None},
                    detail="deleting at the target (--prune)",
                )
            )
        await self.store.apply(job, self.run_id, intents)
        pruned: list[Item] = []
        refused: list[tuple[Item, dict[str, Part], ProviderError]] = []
        while doomed:
            refused = []
            for item, parts in doomed:
                try:
                    with tally(), bound_contextvars(key=item.key):
                        await self.provider.delete(item, parts)
                except ProviderStopped:
                    return pruned, []
                except ProviderError as error:
                    refused.append((item, parts, error))
                    continue
                gone: list[Change] = [PartMove(item.key, p, State.ORPHANED) for p in parts]
                cleared = dict.fromkeys(("target_id", "submitted_hash", "error_code", "error_message"))
                gone.append(
                    Move(
                        item.key,
                        frozenset({State.ORPHANED}),
                        State.ORPHANED,
                        cleared,
                        detail="deleted at the target (--prune)",
                    )
                )
                await self.store.apply(job, self.run_id, gone)
                pruned.append(item)
            if len(refused) == len(doomed):
                break
            doomed = [(item, parts) for item, parts, _ in refused]
        for item, _, why in refused:
            kept = {"error_code": why.code, "error_message": f"not deleted at the target: {why.message}"}
            detail = f"--prune refused: {why.code}"
            await self.store.apply(
                job, self.run_id, [Move(item.key, frozenset({State.ORPHANED}), State.ORPHANED, kept, detail)]
            )
            log.warning("not pruned", key=item.key, code=why.code, message=why.message)
        return pruned, [item for item, _, _ in refused]

    # --- stages -------------------------------------------------------------------------------

    async def read(self, tx: MemoryObjectSendStream[Entry]) -> None:
        async with tx:
            unreported = 0
            finished = True
            async with aclosing(self._entries()) as entries:
                async for entry in entries:
                    await tx.send(entry)
                    self.read_count += 1
                    unreported += 1
                    if unreported == BATCH:
                        self.observer.read(unreported)
                        unreported = 0
                        await anyio.lowlevel.checkpoint()
                        if self._read_no_further():
                            finished = False  # the total is not known: progress must not say it is
                            break
            self.observer.read(unreported, finished=finished)

    def _read_no_further(self) -> bool:
        """A migration whose provider stopped stops reading: nothing more is sent this run, and
        reading on would only record the rest of the source as pending, which took minutes after
        "stopped" at a million lines. The next run reads on from its read frontier (or reads
        everything again, from a source without one). A sync reads on: a workflow it did not
        read would look gone from the source."""
        return self.stopped and self.job.mode == "migrate"

    async def _entries(self) -> AsyncGenerator[Entry, None]:
        """The source; through its read frontier where a migration reads a canonical inventory.

        Any other reading forgets the job's frontier (a sync reads and compares every line, other
        sources have no lines to seek to): it would no longer describe what runs have read.
        """
        if self.job.mode == "migrate" and isinstance(self.source, Inventory):
            job, paths = self.job.name, self.source.paths
            self.frontier = Frontier(self.store, job, self.run_id, paths, self._count_unread)
            await self.frontier.start()
            async with aclosing(self.frontier.entries()) as entries:
                async for entry in entries:
                    yield entry
            return
        await self.store.forget_frontier(self.job.name)
        async with aclosing(self.source()) as entries:
            async for entry in entries:
                yield entry

    def _count_unread(self, by_state: Mapping[State, int], sign: int) -> None:
        """Items before the read frontier that are not read again count as a full scan counts
        them: read, and settled by an earlier run (``sign`` -1: no longer, after a fallback)."""
        read = sum(by_state.values()) * sign
        self.read_count += read
        self.observer.read(read)
        for state, n in by_state.items():
            if state in TERMINAL:
                self.observer.settled(state, n * sign, earlier=True)

    @property
    def since(self) -> int:
        """Items read by this run, or by a run since this one, count as read before (a resume's epoch)."""
        return self.frontier.epoch if self.frontier is not None else self.run_id

    def _read_before(self, row: Item | None, entry: Entry) -> bool:
        """The entry's key was read before it: earlier in this run, or from another line before
        the read frontier this run resumes from."""
        if row is None or row.seen_run is None or row.seen_run < self.since:
            return False
        return row.seen_run == self.run_id or row.origin != entry.origin

    def _recorded(self, row: Item | None, entry: Entry, first_seen: Mapping[str, str]) -> bool:
        """A line this run has recorded already (in this batch, or before): read again at its
        offset before the resume fell back to the full scan that now meets it in order."""
        if self.frontier is None or not self.frontier.fell_back:
            return False
        if entry.key in first_seen:
            return first_seen[entry.key] == entry.origin
        return row is not None and row.seen_run == self.run_id and row.origin == entry.origin

    def _reached(self, batch: list[Entry]) -> list[Change]:
        """How far a batch takes each file's read frontier (its entries come in file order)."""
        if self.frontier is None or not self.frontier.kept:
            return []
        last = {e.place.file: e.place for e in batch if e.place is not None}
        return [Reached(p.file, p.end, p.line) for p in last.values()]

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
        ready: list[tuple[Entry, Item | None]] = []
        first_seen: dict[str, str] = {}
        now = self.clock()
        for entry in batch:
            row = existing.get(entry.key)
            if self._recorded(row, entry, first_seen):
                continue
            offset = entry.place.offset if entry.place is not None else None
            if entry.key in first_seen or self._read_before(row, entry):
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
                        offset=offset,
                    )
                )
                self.observer.settled(State.INVALID)
                continue
            first_seen[entry.key] = entry.origin
            waiting = row is not None and row.state is State.PARKED and (row.not_before or 0) > now
            workflow = entry.workflow
            # Digested only where it is used: a resumed migration re-reads every done line, and
            # hashing them all was a fifth of its time.
            compared = (
                compare(row, workflow, self.digest)
                if self.job.mode == "sync" and row is not None and workflow is not None and not waiting
                else None
            )
            # A sync reads a landed workflow's record again: refused now (edited badly, or a check
            # this release added), it is reported, not passed over as if it were unchanged.
            refused_now = (
                self.job.mode == "sync" and workflow is None and row is not None and row.state in LANDED
            )
            if compared is not None and compared.rejudge:
                assert workflow is not None
                if await self.gate.still_blocked(workflow):
                    compared = None  # still behind a broken upstream: no work, nothing recorded
            if compared is not None:
                changes += compared.changes
                if compared.settled is not None:
                    self.observer.settled(compared.settled, earlier=True)  # no work this run
                    continue
                if compared.resolve:  # stays as it is until its upstreams are compared
                    assert row is not None
                    if row.state is State.ORPHANED:  # compare moved it out of orphaned
                        row = replace(row, state=State.SKIPPED)
                    ready.append((entry, row))
                    continue
            elif row is not None and (row.state in SETTLED_OR_IN_FLIGHT or waiting) and not refused_now:
                changes.append(Seen(entry.key, entry.origin, offset))
                if row.state in TERMINAL:
                    self.observer.settled(row.state, earlier=True)
                continue
            if workflow is None:
                kept = KEPT_AT_TARGET if refused_now else ""
                changes.append(
                    Record(
                        entry.key,
                        entry.name,
                        entry.origin,
                        target,
                        State.INVALID,
                        error_code="InvalidInput",
                        error_message=f"{entry.error}{kept}",
                        offset=offset,
                    )
                )
                self.observer.settled(State.INVALID)
                continue
            digest = self.digest(workflow)
            record = Record(entry.key, entry.name, entry.origin, target, State.PENDING, digest, offset=offset)
            changes.append(record)
            ready.append((entry, row))
        await self.store.apply(job, self.run_id, changes + self._reached(batch))
        await self._admit(ready, tx)
        # Workflows held on a reference that this batch has just recorded may now resolve.
        for held in self.gate.waiting_on([*(e.key for e in batch), *(e.name for e in batch)]):
            self._wake(held.entry.key)

    async def _admit(
        self, entries: list[tuple[Entry, Item | None]], tx: MemoryObjectSendStream[Work]
    ) -> None:
        """Render and send now, hold until the upstreams exist, or fail behind a broken upstream."""
        ready: list[_Ready] = []
        for entry, row in entries:
            assert entry.workflow is not None
            seen = self.settlements
            verdict = await self.gate.judge(entry.workflow) if entry.workflow.upstream else Verdict({})
            if verdict.blocked:
                await self._fail_pending(entry, row, "UpstreamFailed", verdict.blocked)
            elif verdict.waits_on and self.stopped:
                # Stays `pending` for the next run, as what is ready does: held, it would keep its
                # whole workflow in memory while the reader goes on through the inventory.
                continue
            elif verdict.waits_on:
                self.gate.hold(entry, row, verdict.waits_on)
                if self.settlements != seen:  # an upstream may have settled while it was judged
                    self._wake(entry.key)
            else:
                ready.append(_Ready(entry, row, verdict.targets))
        for start in range(0, len(ready), SEND_BATCH):
            await self._render_and_send(ready[start : start + SEND_BATCH], tx)

    async def _render_and_send(self, ready: list[_Ready], tx: MemoryObjectSendStream[Work]) -> None:
        """Render a batch, checkpoint it in one commit, then hand it to the submit workers.

        One commit per batch, not per workflow: with ``synchronous=FULL`` each commit is an
        fsync, and committing each rendering alone capped the engine at about 30 workflows a
        second. Every rendering is in the store before any of them is sent, so a crash leaves
        them ``rendered`` (rendered again next run), never sent unrecorded.
        """
        if self.stopped or not ready:
            return  # stays `pending` for the next run
        target = self.job.target.provider
        records: list[Change] = []
        works: list[Work] = []
        untranslatable: list[Entry] = []
        unchanged: list[Entry] = []
        for entry, row, targets in ready:
            workflow = entry.workflow
            assert workflow is not None
            key, name = entry.key, entry.name
            digest = self.digest.rendered(workflow, targets)
            if row is not None and as_last_rendered(row, self.digest(workflow)):  # a sync's, with upstreams
                if digest == row.submitted_hash:
                    if row.state is not State.SKIPPED:
                        records.append(Move(key, frozenset({row.state}), State.SKIPPED, detail=UNCHANGED))
                    unchanged.append(entry)
                    continue
                why = resolved_otherwise(row.submitted_hash or "")
                records.append(Move(key, frozenset({row.state}), State.PENDING, detail=why))
            try:
                rendered = self.provider.render(workflow, self.job.target, targets)
            except TranslationError as exc:
                records.append(
                    Record(key, name, entry.origin, target, State.INVALID, digest,
                           error_code="Untranslatable", error_message=str(exc))
                )  # fmt: skip
                untranslatable.append(entry)
                continue
            records.append(
                Record(key, name, entry.origin, target, State.RENDERED, digest, rendered.target_id,
                       rendered.warnings)
            )  # fmt: skip
            attempts, retries = (row.attempts, row.retries) if row else (0, 0)
            # Submitted before and still at the target: a sync's update of what exists.
            update = row is not None and row.submitted_hash is not None and row.target_id is not None
            upstreams = tuple(targets.values())
            works.append(Work(key, name, rendered, digest, attempts, retries, update, upstreams))
        await self.store.apply(self.job.name, self.run_id, records)
        for entry in unchanged:
            self.observer.settled(State.SKIPPED, earlier=True)
            await self.settled(entry.key, entry.name, State.SKIPPED)
        for entry in untranslatable:
            self.observer.settled(State.INVALID)
            await self.settled(entry.key, entry.name, State.INVALID)
        for work in works:
            self.in_flight += 1
            await tx.send(work)

    async def _fail_pending(
        self, entry: Entry, row: Item | None, code: str, message: str, state: State = State.FAILED
    ) -> None:
        """A workflow that will not be submitted this run: behind a failed upstream, or in a cycle.

        One a sync found at the target as last submitted stays there as it is (``skipped``, with
        the reason its upstreams were not compared, recorded once, not each night the upstream
        stays broken): the fault is reported on the upstream.
        """
        key, name = entry.key, entry.name
        if (
            row is not None
            and entry.workflow is not None
            and as_last_rendered(row, self.digest(entry.workflow))
        ):
            if row.state is not State.SKIPPED:
                why = f"{UNCHANGED}; its upstreams not compared: {message}"
                kept = Move(key, frozenset({row.state}), State.SKIPPED, detail=why)
                await self.store.apply(self.job.name, self.run_id, [kept])
            self.observer.settled(State.SKIPPED, earlier=True)
            await self.settled(key, name, State.SKIPPED)
            return
        if row is not None and row.state in LANDED:  # a sync found it changed: not sent
            message += KEPT_AT_TARGET
        fields = {"error_code": code, "error_message": message}
        await self.store.apply(
            self.job.name, self.run_id, [Move(key, frozenset({State.PENDING}), state, fields)]
        )
        self.observer.settled(state)
        await self.settled(key, name, state)

    def _wake(self, key: str) -> None:
        """Tell the release loop a held workflow may be ready (it buffers what it no longer reads)."""
        self._wake_tx.send_nowait(key)

    async def settled(self, key: str, name: str, state: State) -> None:
        """An item reached a final state this run: wake the workflows held on it."""
        self.settlements += 1
        for held in self.gate.waiting_on([key, name]):
            self._wake(held.entry.key)

    async def release(self, tx: MemoryObjectSendStream[Work]) -> None:
        """Feed held workflows to the submit stage as their upstreams settle; end at quiescence."""
        async with tx:
            while True:
                woken: str | None = None
                with anyio.move_on_after(0.1):
                    woken = await self._wake_rx.receive()
                if self.stopped:
                    return  # held workflows stay `pending` for the next run
                if woken is not None:
                    await self._recheck(woken, tx)
                    continue
                if not self.translated.is_set():
                    continue
                if not self.gate.held and not self._deferred and not self.in_flight:
                    return
                if self.in_flight or await self.store.next_poll_at(self.job.name) is not None:
                    continue
                if self.gate.held and (await self._recheck_all(tx) or await self._resolve_stalemate(tx)):
                    continue
                # What is still held waits on upstreams that did not settle: the next run.
                if not self._deferred:
                    return
                if self._round == self.settlements:
                    await self._fail_deferred()  # the last round moved nothing: no name came free
                    continue
                if self.prune:
                    await self._sweep(await self._in_the_way())
                await self._send_deferred(tx)

    async def _send_deferred(self, tx: MemoryObjectSendStream[Work]) -> None:
        """Send again what was refused a name while the rest of the run was in flight: the rest
        has settled, so a name this job's renamed or pruned workflows gave up is free now. A
        chain (a takes b's name, b takes c's) frees one link per round: rounds go on while one
        settles anything."""
        deferred, self._deferred = self._deferred, []
        self._round = self.settlements
        for work, _ in deferred:
            self.in_flight += 1
            await tx.send(work)

    async def _fail_deferred(self) -> None:
        """Fail what a whole round of deferred submits found still taken (a swap of two names)."""
        deferred, self._deferred = self._deferred, []
        hint = (
            "still taken once the rest of the run had settled: free the name at the target or rename "
            f"the workflow (a sync sends it again each night; a migration with `migrator retry "
            f"{self.job.name} --failed`)"
        )
        moves: list[Change] = [
            Move(work.key, frozenset({State.RENDERED}), State.FAILED,
                 {"error_code": exc.code, "error_message": f"{exc.message}; {hint}"})
            for work, exc in deferred
        ]  # fmt: skip
        await self.store.apply(self.job.name, self.run_id, moves)
        for work, exc in deferred:
            log.warning("submit failed", key=work.key, code=exc.code)
            self.observer.settled(State.FAILED)
            await self.settled(work.key, work.name, State.FAILED)

    async def _recheck(self, key: str, tx: MemoryObjectSendStream[Work]) -> None:
        held = self.gate.get(key)
        if held is None:
            return
        seen = self.settlements
        verdict = await self.gate.judge(held.workflow)
        if verdict.blocked:
            self.gate.let_go(key)
            await self._fail_pending(held.entry, held.row, "UpstreamFailed", verdict.blocked)
        elif verdict.waits_on:
            held.waits_on = set(verdict.waits_on)
            if self.settlements != seen:  # as in _admit: judge it again
                self._wake(key)
        else:
            self.gate.let_go(key)
            await self._render_and_send([_Ready(held.entry, held.row, verdict.targets)], tx)

    async def _recheck_all(self, tx: MemoryObjectSendStream[Work]) -> bool:
        """Judge every held workflow again; True if any was released or failed.

        The last resort against a missed wake (an upstream settling while its downstream is
        judged, before it is held; ``settlements`` catches that at once): without it such a
        workflow would stay ``pending`` at the end of a run that otherwise completed.
        """
        before = self.gate.held
        for key in self.gate.held_keys():
            await self._recheck(key, tx)
        return self.gate.held < before

    async def _resolve_stalemate(self, tx: MemoryObjectSendStream[Work]) -> bool:
        """Nothing is in flight: release external references, fail cycles. False if nothing moved."""
        outside, cyclic = await self.gate.stalemate()
        for held, cycle in cyclic:
            self.gate.let_go(held.entry.key)
            message = "cross-workflow dependency cycle: " + " -> ".join(cycle)
            await self._fail_pending(held.entry, held.row, "DependencyCycle", message, State.INVALID)
        for held in outside:  # their references are external now: they judge ready
            await self._recheck(held.entry.key, tx)
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
        stopped = self.provider.flow.circuit.stopped
        if stopped is not None:  # not sent: back to where a next run picks it up
            await self.store.apply(job, self.run_id, [self._unsent(key, State.RENDERED, stopped)])
            return
        await self.store.apply(
            job,
            self.run_id,
            [
                Move(
                    key,
                    frozenset({State.RENDERED}),
                    State.SUBMITTING,
                    {"attempts": work.attempts + 1}
                    | ({"target_id": work.rendered.target_id} if work.rendered.target_id else {}),
                )
            ],
        )
        # Parts are checkpointed only inside a submit, after the intent that counts its attempt:
        # a first attempt has none to read (a store round trip per workflow saved).
        known = await self.store.parts(job, key) if work.attempts else {}
        # A part an earlier attempt made holds that attempt's rendering, and the source may have
        # changed since (a submit parked by the quota, then a nightly sync): it is compared with
        # this rendering and brought in line, as a sync's update does, never taken as it is.
        update = work.update or any(part.state is State.DONE for part in known.values())
        parts = PartLog(self.store, job, self.run_id, key, known)
        with tally() as cost, bound_contextvars(key=key):  # the key on every log line of its calls
            try:
                result = await self.provider.submit(work.rendered, parts, update=update)
            except ProviderStopped as exc:
                # The call that met the stop was refused or never sent; parts already made are
                # checkpointed, so the next run resumes this item from them.
                await self.store.apply(job, self.run_id, [self._unsent(key, State.SUBMITTING, exc)])
                return
            except ProviderError as exc:
                if exc.action is Action.TAKEN:
                    await self._defer(work, exc, work.retries + cost.retries)
                else:
                    await self._unsubmitted(work, exc, work.retries + cost.retries)
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
                "retries": work.retries + cost.retries,
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

    @staticmethod
    def _unsent(key: str, now_in: State, stopped: ProviderStopped) -> Move:
        """An item the stopped provider did not take: ``parked`` until a quota resets, else ``pending``."""
        fields: dict[str, object] = {"error_code": "ProviderStopped", "error_message": stopped.reason}
        if stopped.until is not None:
            return Move(key, frozenset({now_in}), State.PARKED, {**fields, "not_before": stopped.until})
        return Move(key, frozenset({now_in}), State.PENDING, fields, detail=f"not sent: {stopped}")

    async def _defer(self, work: Work, exc: ProviderError, retries: int) -> None:
        """Refused a name another object holds: back to ``rendered`` (where a killed run leaves it
        for the next), to be sent once more when nothing else is in flight (:meth:`release`)."""
        fields = {"error_code": exc.code, "error_message": exc.message, "retries": retries}
        detail = f"name taken ({exc.code}); sent again once the run's other submits have settled"
        move = Move(work.key, frozenset({State.SUBMITTING}), State.RENDERED, fields, detail=detail)
        await self.store.apply(self.job.name, self.run_id, [move])
        log.info("submit deferred", key=work.key, code=exc.code)
        self._deferred.append((replace(work, attempts=work.attempts + 1, retries=retries), exc))

    async def _unsubmitted(self, work: Work, exc: ProviderError, retries: int) -> None:
        """The submit ended in an error after its attempts: what that means depends on the answer.

        A definite refusal of the request itself (``fail``) fails the item. A refusal for rate, an
        expired token or a refused signature proves nothing was done: the item goes back to
        ``pending``. Without a
        definite answer (5xx, timeout, reset) the call may have landed: the item stays
        ``submitting``, and the next run looks it up at the target before sending anything.
        """
        action = exc.action
        to = State.FAILED if action.fails_item else State.PENDING if action.unexecuted else State.SUBMITTING
        message = exc.message + (f" (request {exc.request_id})" if exc.request_id else "")
        detail = {
            State.SUBMITTING: f"no definite answer ({exc.code}); reconciled on the next run",
            State.PENDING: f"not taken ({exc.code}); sent again by the next run",
        }.get(to)
        await self.store.apply(
            self.job.name,
            self.run_id,
            [
                Move(
                    work.key,
                    frozenset({State.SUBMITTING}),
                    to,
                    {"error_code": exc.code, "error_message": message, "retries": retries},
                    detail=detail,
                )
            ],
        )
        log.warning(f"submit {to.value}", key=work.key, code=exc.code, request_id=exc.request_id)
        if to is State.FAILED:
            self.observer.settled(State.FAILED)
            await self.settled(work.key, work.name, State.FAILED)
