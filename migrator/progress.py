"""A run's progress as people watch it: done/total, rate, ETA, throttles and retries.

One :class:`Tracker` counts what the pipeline reports (it is the pipeline's
:class:`~migrator.engine.pipeline.Observer`) and reads the provider's flow totals; the two views
draw it: :class:`LiveProgress` on a terminal (rich, redrawn by a ticker in the event loop, so
nothing is read from another thread) and :class:`LogProgress` off a terminal (a ``progress`` log
line every few seconds, JSON as every other log line there). ``migrator status`` computes the same
figures from the state database, with the same :func:`eta` and :func:`duration`.

The rate is items settled per second over the last minute, counting only what this run settled:
items an earlier run had finished are counted as done as they are read, but they cost no work, and
counting them would make a resumed run's first seconds look thousands of times faster than it is.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import structlog
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from migrator.log import moment
from migrator.store import TERMINAL, State, Store

if TYPE_CHECKING:
    from migrator.engine.flow import Flow

T = TypeVar("T")
log = structlog.get_logger("migrator")

#: The rate is measured over this many seconds (or since the run started, if that is shorter).
WINDOW = 60.0
#: Off a terminal, a progress line this often (seconds).
LOG_EVERY = 5.0
#: On a terminal, the display is redrawn this often (seconds).
DRAW_EVERY = 0.5


def eta(remaining: int, rate: float) -> float | None:
    """Seconds until ``remaining`` items are settled at ``rate`` items/s (None: not moving)."""
    if remaining <= 0:
        return 0.0
    return remaining / rate if rate > 0 else None


def duration(seconds: float) -> str:
    """A wait as people read it: ``45s``, ``3m 05s``, ``2h 03m``."""
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


class RateWindow:
    """Items per second over the last :data:`WINDOW` seconds, from samples of a running count."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, span: float = WINDOW) -> None:
        self._clock, self._span = clock, span
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def sample(self, count: int) -> None:
        now = self._clock()
        self._samples.append((now, count))
        # Keep one sample at or before the window's start, so the window is always covered.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._span:
            self._samples.popleft()

    def rate(self) -> float:
        (start, first), (end, last) = self._samples[0], self._samples[-1]
        return (last - first) / (end - start) if end > start else 0.0


class Tracker:
    """What a run has done so far, as the pipeline reports it (an ``Observer``).

    ``known`` is how many items the job had before this run: the total is at least that, and
    the items read, once reading has finished.
    """

    def __init__(
        self,
        job: str,
        target: str,
        flow: Flow,
        known: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job, self.target, self.flow, self.known = job, target, flow, known
        self.read_n = 0
        self.reading = True
        self.by_state: dict[str, int] = {s.value: 0 for s in TERMINAL}
        self.settled_now = 0  # settled by this run's own work, for the rate
        self.window = RateWindow(clock)

    # --- the Observer protocol ---------------------------------------------------------------

    def read(self, n: int, *, finished: bool = False) -> None:
        self.read_n += n
        if finished:
            self.reading = False

    def settled(self, state: State, n: int = 1, *, earlier: bool = False) -> None:
        self.by_state[state.value] = self.by_state.get(state.value, 0) + n
        if not earlier:
            self.settled_now += n

    # --- figures -------------------------------------------------------------------------------

    @property
    def settled_total(self) -> int:
        return sum(self.by_state.values())

    @property
    def total(self) -> int:
        """Items read (at least what the store knew while reading goes on); a sync's orphans,
        settled though not read, count too."""
        read = self.read_n if not self.reading else max(self.read_n, self.known)
        return max(read, self.settled_total)

    def tick(self) -> None:
        """Take a rate sample (the views call it on their schedule)."""
        self.window.sample(self.settled_now)

    def figures(self) -> dict[str, Any]:
        """Done, total, rate, ETA (s, None when not moving), throttles and retries, as logged."""
        rate = self.window.rate()
        totals = self.flow.totals
        stopped = self.flow.circuit.stopped
        figures: dict[str, Any] = {
            "job": self.job,
            "target": self.target,
            "settled": self.settled_total,
            "total": self.total,
            "reading": self.reading,
            "rate": round(rate, 2),
            "eta": eta(self.total - self.settled_total, rate),
            "calls": totals.calls,
            "throttled": totals.throttled,
            "retries": totals.retries,
            **{state: n for state, n in self.by_state.items() if n},
        }
        if figures["eta"] is not None:
            figures["eta"] = round(figures["eta"], 1)
        if stopped is not None:
            figures["stopped"] = stopped.reason
            figures["until"] = stopped.until
        return figures


def eta_text(figures: dict[str, Any]) -> str:
    """The ETA as the display says it; ``>=`` while the source is still being read (the total
    only grows)."""
    if figures.get("stopped"):
        return "stopped"
    seconds = figures["eta"]
    if seconds is None:
        return "unknown"
    if seconds == 0 and not figures["reading"]:
        return "done"
    return (">= " if figures["reading"] else "") + duration(seconds)


class LiveProgress:
    """The terminal view: one row per target with a bar, done/total, rate, ETA, throttles, retries."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def render(self) -> RenderableType:
        f = self.tracker.figures()
        total = f"{f['total']}+" if f["reading"] else str(f["total"])
        row = Table.grid(padding=(0, 2))
        row.add_row(
            Text(f["target"], style="bold"),
            ProgressBar(total=max(f["total"], 1), completed=f["settled"], width=30),
            Text(f"{f['settled']}/{total}"),
            Text(f"{f['rate']:.1f}/s"),
            Text(f"ETA {eta_text(f)}"),
            Text(f"{f['throttled']} throttled"),
            Text(f"{f['retries']} retries"),
        )
        states = ", ".join(f"{f[s.value]} {s.value}" for s in TERMINAL_ORDER if f.get(s.value))
        lines: list[RenderableType] = [row, Text(f"  {states or 'nothing settled yet'}", style="dim")]
        if f.get("stopped"):
            lines.append(Text(f"  stopped: {f['stopped']}", style="yellow"))
        return Group(*lines)

    def __rich__(self) -> RenderableType:
        return self.render()


#: The order states are listed in.
TERMINAL_ORDER = (State.DONE, State.SKIPPED, State.FAILED, State.INVALID, State.ORPHANED)


class LogProgress:
    """The view off a terminal: a ``progress`` log line (info level, so ``--quiet`` drops it)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def line(self, *, final: bool = False) -> None:
        f = self.tracker.figures()
        f["eta"] = "done" if final and f["settled"] >= f["total"] else f["eta"]
        log.info("progress", **f)


async def ticking(every: float, tick: Callable[[], None]) -> None:
    """Call ``tick`` every ``every`` seconds until cancelled."""
    while True:
        await anyio.sleep(every)
        tick()


async def watched(run: Callable[[], Awaitable[T]], every: float, tick: Callable[[], None]) -> T:
    """Await ``run()`` while ``tick`` is called every ``every`` seconds."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticking, every, tick)
        result = await run()
        tg.cancel_scope.cancel()
    return result


# --- `migrator status`: the same figures, from the state database -----------------------------


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this machine (a run killed with -9 leaves its row open)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


async def job_status(store: Store, job: str, now: float | None = None) -> dict[str, Any]:
    """Where ``job`` stands: per target settled/total, the running run's rate and ETA, async jobs
    in flight and parked items (read from the store only; safe while a run writes)."""
    now = time.time() if now is None else now
    by_target = await store.counts_by_target(job)
    counts = {s.value: sum(c[s.value] for c in by_target.values()) for s in State}
    total = sum(counts.values())
    settled = sum(counts[s.value] for s in TERMINAL)
    runs = await store.runs(job)
    last = runs[-1] if runs else None
    running = last is not None and last.outcome is None and _alive(last.pid)
    rate: float | None = None
    seconds: float | None = None
    if running:
        assert last is not None
        since = max(now - WINDOW, last.started_at)
        moved = await store.settled_since(job, last.id, since)
        rate = moved / (now - since) if now > since else 0.0
        seconds = eta(total - settled, rate)
        when = (
            "unknown"
            if seconds is None
            else "done"
            if seconds == 0
            else f"{duration(seconds)} ({moment(now + seconds)})"
        )
    elif settled == total:
        when = "done"
    else:
        when = "not running"
    until = await store.parked_until(job)
    parked_until = until if until is not None and until > now else None
    return {
        "job": job,
        "settled": settled,
        "total": total,
        "counts": counts,
        "targets": {
            target: {"settled": sum(c[s.value] for s in TERMINAL), "total": sum(c.values()), "counts": c}
            for target, c in by_target.items()
        },
        "running": running,
        "run": None
        if last is None
        else {
            "id": last.id,
            "pid": last.pid,
            "started_at": last.started_at,
            "ended_at": last.ended_at,
            "outcome": last.outcome,
            "stopped": last.stopped,
        },
        "rate": None if rate is None else round(rate, 2),
        "eta_seconds": None if seconds is None else round(seconds, 1),
        "eta": when,
        "in_flight": {s.value: counts[s.value] for s in (State.SUBMITTED, State.POLLING)},
        "parked": {"items": counts[State.PARKED.value], "until": parked_until},
    }


def status_lines(status: dict[str, Any]) -> list[str]:
    """``migrator status``'s text for one job: a line per target, then the run, in flight, parked."""
    lines: list[str] = []
    for target, t in status["targets"].items() or {"-": status}.items():
        c = t["counts"]
        lines.append(
            f"{status['job']}: {t['settled']}/{t['total']} settled ({c['done']} done, {c['failed']} failed, "
            f"{c['invalid']} invalid) -> {target}"
        )
    run = status["run"]
    if run is None:
        lines.append("  never run")
    elif status["running"]:
        lines.append(
            f"  run {run['id']} running since {moment(run['started_at'])}: "
            f"{status['rate']:.1f} items/s over the last {WINDOW:g} s, ETA {status['eta']}"
        )
    else:
        ended = run["outcome"] or f"ended without finishing (process {run['pid']} is gone)"
        stopped = f" ({run['stopped']})" if run["stopped"] else ""
        left = status["total"] - status["settled"]
        tail = "ETA done" if status["eta"] == "done" else f"{left} items left, not running"
        lines.append(f"  last run {run['id']}: {ended}{stopped}; {tail}")
    flying = status["in_flight"]
    if sum(flying.values()):
        lines.append(
            f"  in flight: {sum(flying.values())} async jobs "
            f"({flying['polling']} polling, {flying['submitted']} submitted)"
        )
    parked = status["parked"]
    if parked["until"]:
        lines.append(
            f"  quota used up until {moment(parked['until'])}: {parked['items']} items parked, "
            "nothing is sent before then"
        )
    elif parked["items"]:
        lines.append(f"  parked: {parked['items']} items, their quota has reset: the next run sends them")
    return lines
