"""What a run would do, worked out without doing it: ``migrator plan``.

A plan reads the source and translates every workflow exactly as a run would, and compares
each with the state database as a run would, but sends nothing and writes nothing: the store is
opened read-only, and the provider is used only to render. It says, per workflow, whether a run
would create, update, skip, resume or refuse it, which workflows a sync would leave orphaned,
and every translation warning, grouped by rule, so a lossy translation is seen before it lands.

Memory stays flat however large the inventory: what the plan learns per workflow goes into a
temporary SQLite ledger (deleted afterwards), and only counts and a few examples per rule are
kept in memory. Workflows with upstream workflows are decided after the whole source is read,
because an upstream may come later in the inventory, or form a cycle.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio.lowlevel
from rich.markup import escape
from rich.table import Table

from migrator.config import JobConfig
from migrator.engine.gate import BROKEN, READY, ambiguous, blocker, pick
from migrator.engine.pipeline import (
    BATCH,
    IN_FLIGHT,
    SETTLED_OR_IN_FLIGHT,
    UNCHANGED,
    Digester,
    compare,
    resolved_otherwise,
)
from migrator.engine.source import Source
from migrator.errors import TranslationError
from migrator.inventory import Entry
from migrator.log import moment
from migrator.model import Workflow
from migrator.providers.base import Provider, UpstreamTarget, split_warning
from migrator.report.sheet import cell
from migrator.store import Item, State, Store
from migrator.translate.dag import find_cycle

#: What a run would do with a workflow, in the order reports list them.
ACTIONS = ("create", "update", "skip", "resume", "invalid", "blocked", "orphaned")
#: Actions under which a workflow reaches the target (or is there already) in the run planned.
ARRIVES = frozenset({"create", "update", "skip", "resume"})
#: Examples kept per rule for the summary; every case is in the per-item listing.
EXAMPLES = 3

_SCHEMA = """
CREATE TABLE plan (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    code TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    target_id TEXT,
    refs TEXT,
    workflow TEXT,
    planned_action TEXT,
    stored TEXT,
    submitted TEXT,
    duplicate INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX plan_key ON plan (key);
CREATE INDEX plan_name ON plan (name);
CREATE INDEX plan_deferred ON plan (action) WHERE action = 'deferred';
"""


@dataclass(frozen=True, slots=True)
class Planned:
    """One workflow's line in the plan."""

    key: str
    name: str
    action: str
    detail: str
    code: str | None
    warnings: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "action": self.action,
            "code": self.code,
            "detail": self.detail,
            "warnings": [_split(w) for w in self.warnings],
        }


@dataclass(slots=True)
class Rule:
    """One translation rule (or refusal code): how many workflows it touched, with examples."""

    items: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)

    def add(self, key: str, name: str, message: str) -> None:
        self.items += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append({"key": key, "name": name, "message": message})


@dataclass(slots=True)
class Plan:
    """The totals of a plan; :meth:`items` streams the per-workflow lines from the ledger."""

    job: str
    mode: str
    target: str
    read: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    warnings: dict[str, Rule] = field(default_factory=dict)
    refusals: dict[str, Rule] = field(default_factory=dict)
    _ledger: sqlite3.Connection | None = None

    def items(self) -> Iterator[Planned]:
        assert self._ledger is not None, "a plan's items are read inside planning()"
        for key, name, action, detail, code, warnings in self._ledger.execute(
            "SELECT key, name, action, detail, code, warnings FROM plan ORDER BY seq"
        ):
            yield Planned(key, name, action, detail, code, tuple(json.loads(warnings)))

    def summary(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "mode": self.mode,
            "target": self.target,
            "read": self.read,
            "actions": {a: self.actions[a] for a in ACTIONS},
            "warnings": {r: _rule(v) for r, v in sorted(self.warnings.items())},
            "refused": {c: _rule(v) for c, v in sorted(self.refusals.items())},
        }

    @property
    def refused(self) -> int:
        return self.actions["invalid"] + self.actions["blocked"]


def _rule(rule: Rule) -> dict[str, Any]:
    return {"items": rule.items, "examples": rule.examples}


def _split(text: str) -> dict[str, str]:
    rule, message = split_warning(text)
    return {"rule": rule, "message": message}


@asynccontextmanager
async def planning(
    job: JobConfig,
    provider: Provider,
    store: Store | None,
    source: Source,
) -> AsyncIterator[Plan]:
    """Work out the plan; its per-item lines can be read until the context ends."""
    with tempfile.TemporaryDirectory(prefix="migrator-plan-") as tmp:
        ledger = sqlite3.connect(Path(tmp) / "plan.db", isolation_level=None)
        try:
            ledger.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + _SCHEMA)
            planner = _Planner(job, provider, store, ledger)
            await planner.run(source)
            planner.plan._ledger = ledger
            yield planner.plan
        finally:
            ledger.close()


class _Planner:
    def __init__(
        self, job: JobConfig, provider: Provider, store: Store | None, ledger: sqlite3.Connection
    ) -> None:
        self.job, self.provider, self.store, self.db = job, provider, store, ledger
        self.plan = Plan(job.name, job.mode, job.target.provider)
        self.digest = Digester(job.target)
        self.mapped = job.target.mappings.upstreams

    async def run(self, source: Source) -> None:
        batch: list[Entry] = []
        async for entry in source():
            batch.append(entry)
            if len(batch) >= BATCH:
                await self._batch(batch)
                batch = []
                # Reading and rendering never wait on anything: let a Ctrl-C's cancellation in.
                await anyio.lowlevel.checkpoint()
        await self._batch(batch)
        await self._deferred()
        if self.job.mode == "sync" and self.plan.read:  # an empty source orphans nothing, as a run
            await self._orphans()
        self._tally()

    # --- the first pass: every workflow as read ------------------------------------------------

    async def _batch(self, batch: list[Entry]) -> None:
        if not batch:
            return
        self.plan.read += len(batch)
        keys = [e.key for e in batch]
        rows = await self.store.items(self.job.name, keys) if self.store else {}
        self.db.execute("BEGIN")
        for entry in batch:
            if self._known(entry.key):
                first = self.db.execute("SELECT name FROM plan WHERE key = ?", (entry.key,)).fetchone()
                self._line(
                    entry.origin,
                    entry.name,
                    "invalid",
                    code="DuplicateKey",
                    duplicate=True,
                    detail=f"{entry.origin}: key {entry.key!r} already read (as {first[0]!r})",
                )
                continue
            if entry.workflow is None:
                self._line(entry.key, entry.name, "invalid", code="InvalidInput", detail=entry.error or "")
                continue
            row = rows.get(entry.key)
            action, detail, target_id = self._compared(row, entry.workflow)
            if action not in ("create", "update", "compare"):
                stored = row.state.value if row else None
                self._line(entry.key, entry.name, action, detail=detail, target_id=target_id, stored=stored)
            elif entry.workflow.upstream:
                refs = entry.workflow.upstream_workflows()
                self._line(
                    entry.key,
                    entry.name,
                    "deferred",
                    detail=detail,
                    target_id=target_id,
                    refs=json.dumps(refs),
                    workflow=json.dumps(entry.workflow.to_record()),
                    then=action,
                    stored=row.state.value if row else None,
                    submitted=row.submitted_hash if row else None,
                )
            else:
                self._render(entry.key, entry.name, entry.workflow, action, detail, target_id, {})
        self.db.execute("COMMIT")

    def _compared(self, row: Item | None, workflow: Workflow) -> tuple[str, str, str | None]:
        """What a run does with a workflow given its row in the store (see Pipeline's translate)."""
        if row is None:
            return "create", "new", None
        if self.job.mode == "sync":
            verdict = compare(row, workflow, self.digest)
            if verdict is not None:
                if verdict.settled is not None:
                    return "skip", UNCHANGED, row.target_id
                if verdict.resolve:  # skipped, or updated if its upstreams resolve otherwise now
                    return "compare", UNCHANGED, row.target_id
                update = row.target_id is not None and row.submitted_hash is not None
                return ("update" if update else "create"), "changed in the source", row.target_id
        if row.state in IN_FLIGHT:
            return "resume", f"{row.state.value}: reconciled or polled, not sent again", row.target_id
        if row.state in SETTLED_OR_IN_FLIGHT:
            why = {State.FAILED: "failed earlier: `migrator retry` sends it again"}.get(
                row.state, f"{row.state.value} already"
            )
            return "skip", why, row.target_id
        if row.state is State.PARKED:
            until = row.not_before or 0
            if until > time.time():  # the run leaves it parked and sends nothing before then
                return "skip", f"parked until {moment(until)}, when the quota resets", row.target_id
            return "create", "parked; the quota has reset since", row.target_id
        update = row.target_id is not None and row.submitted_hash is not None
        return ("update" if update else "create"), f"{row.state.value}: not yet at the target", row.target_id

    def _render(
        self,
        key: str,
        name: str,
        workflow: Workflow,
        action: str,
        detail: str,
        target_id: str | None,
        targets: dict[str, UpstreamTarget],
        seq: int | None = None,
    ) -> None:
        try:
            rendered = self.provider.render(workflow, self.job.target, targets)
        except TranslationError as exc:
            self._line(key, name, "invalid", code="Untranslatable", detail=str(exc), seq=seq)
            return
        self._line(
            key,
            name,
            action,
            detail=detail,
            warnings=rendered.warnings,
            target_id=target_id or rendered.target_id,
            seq=seq,
        )

    def _known(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM plan WHERE key = ? LIMIT 1", (key,)).fetchone() is not None

    def _line(
        self,
        key: str,
        name: str,
        action: str,
        *,
        detail: str = "",
        code: str | None = None,
        warnings: tuple[str, ...] = (),
        target_id: str | None = None,
        refs: str | None = None,
        workflow: str | None = None,
        then: str | None = None,
        duplicate: bool = False,
        stored: str | None = None,
        submitted: str | None = None,
        seq: int | None = None,
    ) -> None:
        """Write one workflow's line; ``seq`` rewrites a deferred line in place (keeping its order)."""
        values = (
            key,
            name,
            action,
            detail,
            code,
            json.dumps(list(warnings)),
            target_id,
            refs,
            workflow,
            then,
            int(duplicate),
        )
        if seq is None:
            self.db.execute(
                "INSERT INTO plan (key, name, action, detail, code, warnings, target_id, refs, workflow, "
                "planned_action, duplicate, stored, submitted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: E501
                (*values, stored, submitted),
            )
        else:  # a deferred line decided: its source record is no longer needed
            self.db.execute(
                "UPDATE plan SET key = ?, name = ?, action = ?, detail = ?, code = ?, warnings = ?, "
                "target_id = ?, refs = ?, workflow = ?, planned_action = ?, duplicate = ? WHERE seq = ?",
                (*values, seq),
            )

    # --- the second pass: workflows with upstream workflows -----------------------------------

    async def _deferred(self) -> None:
        """Decide the deferred workflows in rounds, upstream first; what never resolves is a cycle."""
        while True:
            moved = 0
            after = 0
            # Page by page: each deferred line holds its whole source record, and a million
            # workflows with upstreams fetched at once took gigabytes.
            while page := self.db.execute(
                "SELECT seq, key, name, detail, target_id, refs, workflow, planned_action, submitted "
                "FROM plan WHERE action = 'deferred' AND seq > ? ORDER BY seq LIMIT ?",
                (after, BATCH),
            ).fetchall():
                self.db.execute("BEGIN")
                for line in page:
                    moved += await self._decide(*line)
                self.db.execute("COMMIT")
                after = page[-1][0]
                await anyio.lowlevel.checkpoint()
            if not moved:
                break
        self._cycles()

    async def _decide(
        self,
        seq: int,
        key: str,
        name: str,
        why: str,
        target_id: str | None,
        refs: str,
        record: str,
        action: str,
        submitted: str | None,
    ) -> bool:
        """Decide one deferred line, if its upstreams are decided (else False)."""
        decided = await self._upstreams(json.loads(refs))
        if decided is None:
            return False  # an upstream is itself still deferred
        targets, blocked = decided
        if blocked:
            if action == "compare":  # at the target as it is: the run keeps it so
                self._kept(seq, key, name, target_id, blocked)
            else:
                self._line(key, name, "blocked", code="UpstreamFailed", detail=blocked, seq=seq)
            return True
        workflow = Workflow.model_validate(json.loads(record))
        if action == "compare":
            if self.digest.rendered(workflow, targets) == submitted:
                self._line(key, name, "skip", detail=why, target_id=target_id, seq=seq)
                return True
            action, why = "update", resolved_otherwise(submitted or "")
        self._render(key, name, workflow, action, why, target_id, targets, seq)
        return True

    def _kept(self, seq: int, key: str, name: str, target_id: str | None, reason: str) -> None:
        """A sync's unchanged workflow whose upstreams cannot be compared: left as it is."""
        why = f"{UNCHANGED}; its upstreams not compared: {reason}"
        self._line(key, name, "skip", detail=why, target_id=target_id, seq=seq)

    async def _upstreams(self, refs: list[str]) -> tuple[dict[str, UpstreamTarget], str] | None:
        """Each reference as the run's gate would find it: in this inventory, else in the store.

        None while a reference is still undecided. An upstream that the run would create has no
        target id yet; it is rendered with a stand-in that names it, which is all a plan needs.
        """
        targets: dict[str, UpstreamTarget] = {}
        for ref in refs:
            if ref in self.mapped:  # as the run's gate: the job file's word wins
                targets[ref] = UpstreamTarget(ref, self.mapped[ref], self.mapped[ref], external=True)
                continue
            line = self._find(ref)
            if isinstance(line, list):
                return {}, ambiguous(ref, line)
            if line is not None:
                up_key, up_name, action, target_id, stored = line
                if action == "deferred":
                    # A workflow the run compares with its upstreams is held meanwhile, and its
                    # dependants wait until it is kept or updated, as for any other.
                    return None
                if action not in ARRIVES:
                    return {}, f"upstream workflow {ref!r} would be {action}"
                if action == "skip" and stored in {s.value for s in BROKEN}:
                    return {}, f"upstream workflow {ref!r} is {stored}"
                targets[ref] = UpstreamTarget(up_key, up_name, target_id or f"<new: {up_name}>")
                continue
            item = await self._stored(ref)
            if item is None:
                continue  # outside the job: rendered without it, and the renderer warns
            if (why := blocker(ref, item)) is not None:
                return {}, why
            assert not isinstance(item, list)
            if item.state not in READY or not item.target_id:
                # The run's gate waits for it, and nothing in this source will settle it.
                return {}, f"upstream workflow {ref!r} is {item.state.value}, not at the target yet"
            targets[ref] = UpstreamTarget(item.key, item.name, item.target_id)
        return targets, ""

    def _find(self, ref: str) -> tuple[str, str, str, str | None, str | None] | list[str] | None:
        """A reference by key, else by name, in this inventory: its line, or the keys of the
        workflows a name is ambiguous between (as the run records them all), or None."""
        columns = "SELECT key, name, action, target_id, stored FROM plan"
        row = self.db.execute(f"{columns} WHERE key = ? AND duplicate = 0", (ref,)).fetchone()
        if row is None:
            named = self.db.execute(f"{columns} WHERE name = ? AND duplicate = 0", (ref,)).fetchall()
            if len(named) > 1:
                return [r[0] for r in named]
            row = named[0] if named else None
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])

    async def _stored(self, ref: str) -> Item | list[Item] | None:
        """A reference this inventory does not answer, as the run's gate finds it in the store
        (:func:`~migrator.engine.gate.pick`): a workflow this inventory has under another name
        no longer answers its old one, and in a sync what it does not have is gone."""
        if self.store is None:
            return None
        found = (await self.store.items(self.job.name, [ref])).get(ref)
        if found is not None:
            return found
        named = [
            i for i in (await self.store.by_name(self.job.name, [ref])).get(ref, []) if not self._known(i.key)
        ]
        sync = self.job.mode == "sync"
        return pick(named, lambda i: i.state is State.ORPHANED or sync)

    def _cycles(self) -> None:
        """What is still deferred waits on a cycle: invalid, naming the cycle, as a run decides."""
        left = {
            key: (seq, name, json.loads(refs), action, target_id)
            for seq, key, name, refs, action, target_id in self.db.execute(
                "SELECT seq, key, name, refs, planned_action, target_id FROM plan "
                "WHERE action = 'deferred' ORDER BY seq"
            )
        }
        if not left:
            return
        names = {name: key for key, (_, name, *_) in left.items()}
        edges = [
            (k, up)
            for k, (_, _, refs, *_) in left.items()
            for r in refs
            if (up := r if r in left else names.get(r))
        ]
        self.db.execute("BEGIN")
        for key, (seq, name, _, action, target_id) in left.items():
            cycle = find_cycle([key, *(k for k in left if k != key)], edges)
            message = "cross-workflow dependency cycle: " + " -> ".join(cycle)
            if action == "compare":
                self._kept(seq, key, name, target_id, message)
            else:
                self._line(key, name, "invalid", code="DependencyCycle", detail=message, seq=seq)
        self.db.execute("COMMIT")

    # --- what a sync leaves behind ------------------------------------------------------------

    async def _orphans(self) -> None:
        if self.store is None:
            return
        states = [s for s in State if s not in IN_FLIGHT]
        self.db.execute("BEGIN")
        async for item in self.store.each_in_states(self.job.name, states):
            if not self._known(item.key):
                where = f"at the target as {item.target_id}" if item.target_id else "not at the target"
                self._line(
                    item.key,
                    item.name,
                    "orphaned",
                    target_id=item.target_id,
                    detail=f"gone from the source; {where} (a run with --prune deletes it)",
                )
        self.db.execute("COMMIT")

    def _tally(self) -> None:
        plan = self.plan
        for key, name, action, detail, code, warnings in self.db.execute(
            "SELECT key, name, action, detail, code, warnings FROM plan ORDER BY seq"
        ):
            plan.actions[action] += 1
            if code is not None:
                plan.refusals.setdefault(code, Rule()).add(key, name, detail)
            seen: set[str] = set()
            for warning in json.loads(warnings):
                rule, message = split_warning(warning)
                rule_of = plan.warnings.setdefault(rule, Rule())
                if rule not in seen:
                    seen.add(rule)
                    rule_of.add(key, name, message)


# --- output ------------------------------------------------------------------------------------


def write_json(plan: Plan, out: TextIO) -> None:
    """The summary, then one line per workflow, streamed from the ledger (never all in memory)."""
    out.write('{"summary": ' + json.dumps(plan.summary(), ensure_ascii=False) + ',\n "items": [')
    for n, item in enumerate(plan.items()):
        out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(item.as_dict(), ensure_ascii=False))
    out.write("\n]}\n")


def write_csv(plan: Plan, out: TextIO) -> None:
    """One row per workflow, for a spreadsheet: the rules it met and their messages."""
    rows = csv.writer(out)
    rows.writerow(["key", "name", "action", "code", "detail", "rules", "warnings"])
    for item in plan.items():
        split = [_split(w) for w in item.warnings]
        rules = sorted({w["rule"] for w in split})
        messages = " | ".join(f"{w['rule']}: {w['message']}" for w in split)
        values = (item.key, item.name, item.action, item.code, item.detail, " ".join(rules), messages)
        rows.writerow([cell(v) for v in values])


def tables(plan: Plan) -> list[Table]:
    """What a person reads first: the actions, then each rule with how many workflows and an example."""
    actions = Table(
        title=escape(f"plan of job {plan.job} ({plan.mode} into {plan.target}): {plan.read} read")
    )
    actions.add_column("action")
    actions.add_column("workflows", justify="right")
    for action in ACTIONS:
        actions.add_row(action, str(plan.actions[action]))
    out = [actions]
    for title, rules in (("warnings by rule", plan.warnings), ("refused, by reason", plan.refusals)):
        if not rules:
            continue
        table = Table(title=title)
        table.add_column("rule")
        table.add_column("workflows", justify="right")
        table.add_column("for example")
        for rule, found in sorted(rules.items()):
            example = found.examples[0]
            table.add_row(escape(rule), str(found.items), escape(f"{example['name']}: {example['message']}"))
        out.append(table)
    return out
