"""The read frontier: how far a migration has recorded each file of a JSON Lines inventory.

Without it, a resumed migration reads its whole inventory again to find what is left, parsing and
validating every line to learn its key only to find it done: with a million lines, twelve minutes
before the first submit. So a migration records, with each batch of items, how far into each
file every line is recorded (in the same transaction: a frontier is never ahead of its rows), and
where each item's line starts. A run that finds the files as the frontier describes them (the same
files in the same order, each with its resolved path, size, modification time and inode) reads
again, by seeking to them, only the lines before the frontier whose items still have work a full
scan would give them; then it reads on from the frontier.

The *epoch* is the run that began reading the files as they are from their first line. Every
item a run has read since lies before the frontier, so to a resumed run those items count as read
(for duplicate keys and progress) though it does not read them again. Anything else, or a line
read back that is not its item's, means a full scan and a new epoch: a duplicate or silently
dropped workflow costs far more than a slow resume. A sync, which compares every line, and a
source with a JSON array or a provider's export files keep no frontier and read in full.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass, replace
from itertools import groupby
from pathlib import Path

import structlog

from migrator import inventory
from migrator.inventory import Entry
from migrator.store import Mark, State, Store

log = structlog.get_logger(__name__)

#: States of items before the frontier that are read again: those a full scan does not skip (it
#: skips settled and in-flight items). A parked item is read again to see whether its wait is over.
AGAIN = (State.PENDING, State.RENDERED, State.PARKED, State.INVALID)
#: Items read again per store query: memory stays flat however many there are.
PAGE = 500

#: Told how many items before the frontier, by state, count as read without being read (+1), or
#: no longer do (-1: the resume fell back to a full scan, which reads and counts them).
Count = Callable[[Mapping[State, int], int], None]


@dataclass(slots=True)
class ReadStats:
    """What a run read (logged at the end of reading): lines before the frontier skipped, and read
    again at their offsets; lines read in order (from the frontier on, or all of a full scan)."""

    epoch: int = 0
    skipped: int = 0
    reread: int = 0
    scanned: int = 0
    fallback: str | None = None
    """Why a resume fell back to a full scan, if it did."""


@dataclass(frozen=True, slots=True, order=True)
class _Again:
    """An item before the frontier to read again: where its line is, and the key it must have."""

    seq: int
    offset: int
    origin: str
    key: str
    duplicate: bool


def marks(paths: Sequence[Path]) -> list[Mark] | None:
    """The source's files as they are now; None if a frontier cannot describe them (a file that is
    missing or not JSON Lines, or one named twice)."""
    files = inventory.files(paths)
    if len({str(f) for f in files}) != len(files):
        return None
    found: list[Mark] = []
    for seq, path in enumerate(files):
        if path.suffix not in inventory.LINE_SUFFIXES:
            return None
        try:
            st = path.stat()
            resolved = path.resolve(strict=True)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        found.append(Mark(seq, str(path), str(resolved), st.st_size, st.st_mtime_ns, st.st_ino))
    return found


def _holds(known: Sequence[Mark], now: Sequence[Mark]) -> bool:
    """The frontier describes these files: the same ones, unchanged, read in one epoch, and each
    frontier at the start of a line."""

    def identity(m: Mark) -> tuple[object, ...]:
        return m.seq, m.name, m.path, m.size, m.mtime_ns, m.inode

    if not known or [identity(m) for m in known] != [identity(m) for m in now]:
        return False
    return len({m.epoch for m in known}) == 1 and all(_at_line_start(m) for m in known)


def _at_line_start(mark: Mark) -> bool:
    if not 0 <= mark.line <= mark.offset <= mark.size:
        return False
    if mark.offset in (0, mark.size):
        return True
    with open(mark.name, "rb") as fh:
        fh.seek(mark.offset - 1)
        return fh.read(1) == b"\n"


def _located(row: tuple[str, str, int | None, str | None], files: Mapping[str, Mark]) -> _Again | None:
    """Where an item's line is, if its row says so consistently with the frontier."""
    key, origin, offset, code = row
    name, _, number = origin.rpartition(":")
    mark = files.get(name)
    if mark is None or offset is None or not number.isdigit():
        return None
    if not (0 <= offset < mark.offset and 0 < int(number) <= mark.line):
        return None
    return _Again(mark.seq, offset, origin, key, code == "DuplicateKey")


def _read_again(name: str, items: Iterable[_Again]) -> Iterator[tuple[_Again, Entry | None]]:
    """Each item's line read again from the file, if it still holds the item (None if not). A
    duplicate's row is keyed by its origin, not by the key of its line."""
    with open(name, "rb") as fh:
        for again in items:
            entry = inventory.entry_at(fh, again.offset, again.origin)
            ok = entry is not None and (again.duplicate or entry.key == again.key)
            yield again, entry if ok else None


class Frontier:
    """A migration's reading of a canonical inventory, keeping (and resuming from) its frontier.

    :meth:`start` decides between a resume and a full scan, before anything is read; then
    :meth:`entries` streams what the run must read. While a resume reads items again, the
    ``epoch`` is that of the frontier; after a fallback, and in a full scan, it is this run.
    """

    def __init__(self, store: Store, job: str, run_id: int, paths: Sequence[Path], count: Count) -> None:
        self.store, self.job, self.run_id, self.paths = store, job, run_id, tuple(paths)
        self._count = count
        self.stats = ReadStats(epoch=run_id)
        self.fell_back = False
        self._marks: list[Mark] | None = None  # None: no frontier is kept
        self._resuming = False
        self._skipped: dict[State, int] = {}

    @property
    def epoch(self) -> int:
        """The run since which every item read lies before the frontier: read, to this run."""
        return self.stats.epoch

    @property
    def kept(self) -> bool:
        """The frontier moves on as lines are recorded (``Reached``)."""
        return self._marks is not None

    async def start(self) -> None:
        """Resume from the frontier if it holds (counting what is not read again), else begin a
        new epoch, or keep no frontier for a source it cannot describe."""
        now = marks(self.paths)
        if now is None:
            await self.store.forget_frontier(self.job)
            return
        known = await self.store.frontier(self.job)
        if not _holds(known, now):
            await self._begin(now)
            return
        self._marks, self._resuming = known, True
        self.stats.epoch = known[0].epoch
        counts = await self.store.read_since(self.job, self.epoch)
        self._skipped = {State(s): n for s, n in counts.items() if n and State(s) not in AGAIN}
        self.stats.skipped = sum(self._skipped.values())
        self._count(self._skipped, 1)
        log.info(
            "resuming from the read frontier",
            job=self.job,
            epoch=self.epoch,
            skipped=self.stats.skipped,
            lines=[f"{m.name}:{m.line}" for m in known],
        )

    async def _begin(self, now: Sequence[Mark]) -> None:
        """This run reads the files from their first line: a new epoch."""
        await self.store.begin_epoch(self.job, self.run_id, now)
        self._marks = [replace(m, epoch=self.run_id, offset=0, line=0) for m in now]
        self.stats.epoch = self.run_id

    async def entries(self) -> AsyncGenerator[Entry, None]:
        """What the run reads: the items read again, then each file from its frontier (from its
        first line in a new epoch)."""
        if self._resuming:
            async with aclosing(self._again()) as again:  # closed at once when a run stops reading
                async for entry in again:
                    yield entry
        if self._marks is None:
            for entry in inventory.read(self.paths):
                self.stats.scanned += 1
                yield entry
        else:
            for mark in self._marks:
                for entry in inventory.entries(Path(mark.name), offset=mark.offset, line=mark.line):
                    self.stats.scanned += 1
                    yield entry
        log.info("source read", job=self.job, **asdict(self.stats))

    async def _again(self) -> AsyncGenerator[Entry, None]:
        """The items before the frontier that still have work, read again at their offsets.

        Page by page (by key, per state: the store's index order), each page in file order. Rows
        read by this run are left out, so that one whose state changes meanwhile is not read twice.
        """
        assert self._marks is not None
        files = {m.name: m for m in self._marks}
        names = [m.name for m in self._marks]
        for state in AGAIN:
            after = ""
            while page := await self.store.unread(self.job, state, self.epoch, self.run_id, after, PAGE):
                after = page[-1][0]
                located = [_located(row, files) for row in page]
                if None in located:
                    bad = page[located.index(None)]
                    await self._fall_back(f"item {bad[0]!r} has no place before the frontier ({bad[1]})")
                    return
                for seq, group in groupby(sorted(a for a in located if a is not None), key=lambda a: a.seq):
                    for again, entry in _read_again(names[seq], group):
                        if entry is None:
                            await self._fall_back(f"{again.origin} is not item {again.key!r} any more")
                            return
                        self.stats.reread += 1
                        yield entry

    async def _fall_back(self, why: str) -> None:
        """The store and the files disagree: read everything, as a new epoch."""
        log.warning("read frontier does not hold: reading the whole source", job=self.job, why=why)
        self.stats.fallback = why
        self._count(self._skipped, -1)
        self._skipped, self.stats.skipped = {}, 0
        self.fell_back, self._resuming = True, False
        self.stats.epoch = self.run_id
        now = marks(self.paths)
        if now is None:
            self._marks = None
            await self.store.forget_frontier(self.job)
        else:
            await self._begin(now)
