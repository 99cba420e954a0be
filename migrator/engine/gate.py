"""Holds a workflow back until the workflows it depends on exist at the target.

A downstream workflow names its upstreams (by item key or by workflow name); its request can
only be rendered once every upstream has a target id (EMR ``ParentFlowList``) and exists at the
target (a DataWorks dependency must resolve to an existing output). The inventory need not be in
topological order: a workflow whose upstream is not ready is *held* in memory, and released
when that upstream settles. Only held workflows are kept in memory.

What can never be released is decided once nothing else is in flight: a reference to a workflow
that is in neither the inventory nor the store is external (the workflow goes ahead, with a
warning that the dependency is not carried, unless the job's ``[target.mappings] upstreams``
names its id at the target, in which case it is carried at once); held workflows that wait on
each other form a cycle (invalid, with the cycle named); an upstream that failed fails its
dependants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from migrator.inventory import Entry
from migrator.model import Workflow
from migrator.providers.base import UpstreamTarget
from migrator.store import Item, State, Store
from migrator.translate.dag import find_cycle, topological_order

#: At the target: an orphaned upstream (gone from the source, not pruned) still exists there.
READY = frozenset({State.DONE, State.SKIPPED, State.ORPHANED})
BROKEN = frozenset({State.FAILED, State.INVALID})


@dataclass(slots=True)
class Held:
    """A workflow waiting for its upstreams; ``waits_on`` holds references not yet ready."""

    entry: Entry
    row: Item | None
    waits_on: set[str] = field(default_factory=set)

    @property
    def workflow(self) -> Workflow:
        assert self.entry.workflow is not None
        return self.entry.workflow


@dataclass(frozen=True, slots=True)
class Verdict:
    """Ready (``targets`` maps each resolvable reference to its target id), waiting, or blocked."""

    targets: dict[str, UpstreamTarget]
    waits_on: frozenset[str] = frozenset()
    blocked: str | None = None


class Gate:
    def __init__(self, store: Store, job: str, mapped: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._job = job
        self._mapped = dict(mapped or {})  # [target.mappings] upstreams: outside the job, at the target
        self._held: dict[str, Held] = {}  # by the held item's own key
        self._external: set[str] = set()  # references decided to be outside this job
        self._run_id: int | None = None
        self._sync = False
        self._reading: Callable[[], bool] = lambda: False

    def start(self, run_id: int, *, sync: bool, reading: Callable[[], bool]) -> None:
        """Judge for run ``run_id``, which reads its source while ``reading()`` is true."""
        self._run_id, self._sync, self._reading = run_id, sync, reading

    def _unread(self, item: Item) -> bool:
        """An upstream this run has not read yet, while it still reads: its state is the last
        run's. A broken one may be fixed in the source (a dependant failed behind it would stay
        failed); in a sync a landed one may be about to change (a dependant sent before it would
        name outputs it does not have yet). Either is judged once this run has read it."""
        if item.seen_run == self._run_id or self._run_id is None or not self._reading():
            return False
        if self._sync:
            return item.state in BROKEN | READY
        return item.state is State.INVALID  # a migration reads an invalid item again, a failed one not

    def _gone(self, item: Item) -> bool:
        """Gone from the source: orphaned, or about to be (see :meth:`_lookup`)."""
        if item.state is State.ORPHANED:
            return True
        return (
            self._sync and self._run_id is not None and not self._reading() and item.seen_run != self._run_id
        )

    @property
    def held(self) -> int:
        return len(self._held)

    async def _lookup(self, refs: Iterable[str]) -> dict[str, Item | list[Item] | None]:
        """Each reference resolved by item key first, then by workflow name: one item, or the
        items a name is ambiguous between, or None (in neither the inventory nor the store).

        An orphaned item (gone from the source) does not count against a name the source still
        has: a workflow given a new source id keeps its name, and its old item stays behind. Nor
        does one a sync has read its whole source without meeting: it is orphaned as the run ends.
        """
        wanted = list(refs)
        by_key = await self._store.items(self._job, wanted)
        missing = [r for r in wanted if r not in by_key]
        by_name = await self._store.by_name(self._job, missing) if missing else {}
        return {ref: by_key.get(ref) or pick(by_name.get(ref, []), self._gone) for ref in wanted}

    async def judge(self, workflow: Workflow) -> Verdict:
        targets: dict[str, UpstreamTarget] = {}
        waits: set[str] = set()
        for ref, item in (await self._lookup(workflow.upstream_workflows())).items():
            if ref in self._mapped:  # the job file's word wins over what the store or source says
                targets[ref] = UpstreamTarget(ref, self._mapped[ref], self._mapped[ref], external=True)
            elif item is None:
                if ref not in self._external:  # an external reference is rendered without, with a warning
                    waits.add(ref)
            elif any(map(self._unread, item if isinstance(item, list) else [item])):
                waits.add(ref)  # of a name's workflows, one not read yet may be gone from the source
            elif (why := blocker(ref, item)) is not None:
                return Verdict({}, blocked=why)
            elif not isinstance(item, list) and item.state in READY and item.target_id:
                if item.key in self._held:
                    # At the target, but held while a sync compares it: it may be updated (its
                    # outputs with it), and what it waits on may be this workflow (a cycle the
                    # source now has, which the stalemate names rather than land).
                    waits.add(ref)
                else:
                    targets[ref] = UpstreamTarget(item.key, item.name, item.target_id)
            else:
                waits.add(ref)
        return Verdict(targets, frozenset(waits))

    async def still_blocked(self, workflow: Workflow) -> bool:
        """Whether an upstream of ``workflow`` is, as stored, one :meth:`judge` fails it behind:
        a workflow failed behind its upstream is judged again (and recorded) only once not."""
        found = await self._lookup(workflow.upstream_workflows())
        return any(
            item is not None and ref not in self._mapped and blocker(ref, item) for ref, item in found.items()
        )

    def hold(self, entry: Entry, row: Item | None, waits_on: Iterable[str]) -> None:
        self._held[entry.key] = Held(entry, row, set(waits_on))

    def waiting_on(self, refs: Iterable[str]) -> list[Held]:
        """Held workflows that wait on any of ``refs`` (keys or names that just changed)."""
        changed = set(refs)
        return [p for p in self._held.values() if p.waits_on & changed]

    def held_keys(self) -> list[str]:
        """The held workflows' keys, oldest first."""
        return list(self._held)

    def get(self, key: str) -> Held | None:
        return self._held.get(key)

    def let_go(self, key: str) -> Held:
        return self._held.pop(key)

    async def stalemate(self) -> tuple[list[Held], list[tuple[Held, list[str]]]]:
        """Nothing is in flight any more: decide what is left.

        Returns the held workflows whose remaining references point outside the job (released
        with a warning), and those that wait on a cycle of held workflows, with that cycle.
        Workflows waiting on an upstream that exists but is unsettled (say, left ``submitting``
        by a provider that stopped answering) stay held for the next run.
        """
        names = {p.workflow.name: k for k, p in self._held.items()}

        def held_key(ref: str) -> str | None:
            return ref if ref in self._held else names.get(ref)

        edges = [(k, up) for k, p in self._held.items() for ref in p.waits_on if (up := held_key(ref))]
        # Released in an order where each upstream goes first: what waits on a cycle of held
        # workflows, or is on one, has no place in it (a workflow that waits on a held one is not
        # cyclic for that alone: its upstream may wait outside the job, released at this stalemate).
        free = set(topological_order(list(self._held), [(up, down) for down, up in edges]))
        outside: list[Held] = []
        cyclic: list[tuple[Held, list[str]]] = []
        for key, held in list(self._held.items()):
            if key not in free:  # on a cycle, or waiting on one: never released
                others = [k for k in self._held if k != key]
                cyclic.append((held, find_cycle([key, *others], edges)))
                continue
            if any(held_key(ref) for ref in held.waits_on):
                continue  # waits on a held workflow that is released in its turn
            found = await self._lookup(held.waits_on)
            if all(item is None for item in found.values()):
                self._external.update(held.waits_on)
                outside.append(held)
        return outside, cyclic


def pick(named: list[Item], gone: Callable[[Item], bool]) -> Item | list[Item] | None:
    """What a reference by name resolves to among the items of that name: one item, the items it
    is ambiguous between, or None. Those ``gone`` from the source count only if all are."""
    # A repeated inventory line is an item of its own (keyed by its origin), not a workflow.
    named = [i for i in named if i.error_code != "DuplicateKey"]
    if len(named) > 1:
        named = [i for i in named if not gone(i)] or named
    return named[0] if len(named) == 1 else named or None


def ambiguous(ref: str, keys: list[str]) -> str:
    listed = ", ".join(repr(k) for k in keys)
    return f"upstream {ref!r} names {len(keys)} workflows ({listed}): refer to one by key"


def blocker(ref: str, item: Item | list[Item]) -> str | None:
    """Why a dependant of ``item`` (the workflow ``ref`` names) can never be sent, if so."""
    if isinstance(item, list):
        return ambiguous(ref, [i.key for i in item])
    if item.state in BROKEN:
        return f"upstream workflow {ref!r} is {item.state.value}"
    if item.state is State.ORPHANED and not item.target_id:
        return f"upstream workflow {ref!r} is gone from the source and was never at the target"
    return None
