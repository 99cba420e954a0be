"""Instructions per workflow: the capacity benchmark's work, counted by valgrind, not timed.

This VM's speed drifts by a fifth from one run to the next, so calls per second cannot tell two
releases apart by less than that. The instructions a run executes barely move: this runs the
capacity setup (served sandbox, no latency, no quota, imports finished at once) with the engine
and the sandbox each under ``valgrind --tool=callgrind``, for two inventory sizes, and prints the
difference over the extra workflows, so that start-up cancels out. Kernel time (syscalls, fsyncs,
loopback) is not counted, and valgrind's emulated CPU lacks SHA extensions, so hashing weighs more
here than on the machine itself: compare releases with it, not against the capacity goal.

Needs valgrind (``apt-get install valgrind``); without it the benchmark says so and exits 2.
About a minute of start-up per run under valgrind, plus about a second per workflow.

    python bench/instructions.py                       # DataWorks, 50 and 250 workflows
    python bench/instructions.py --kinds emr,enos --counts 50,150
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from capacity import NONE, POLL
from harness import DEFAULT_WORK, JobDir, emit, inventory, load, migrator, run_child, served

_TOTAL = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def callgrind(out: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]


def instructions(out: Path) -> int:
    """The program's total instructions, from callgrind's output file."""
    found = _TOTAL.search(out.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"{out}: no instruction total (did the process exit cleanly?)")
    return int(found[1])


def measure(work: Path, kind: str, count: int, outs: Path) -> dict[str, Any]:
    """Engine and sandbox instructions for ``count`` workflows of the ``kind`` sample."""
    inv = inventory(work.parent, count)
    job = JobDir(work / f"{kind}-{count}", kind, inv, concurrency=64, job_delay=NONE, poll=POLL)
    sandbox_out, engine_out = outs / f"{kind}-{count}.sandbox", outs / f"{kind}-{count}.engine"
    with served("--job-delay", "0,0", wrap=callgrind(sandbox_out), stop_timeout=600) as info:
        job.served = info[kind]
        args = [*callgrind(engine_out), *migrator("run", job.write().job, "--config", job.config, "-q")]
        child = run_child(args, env=job.env())
    items = sum(job.states().values())
    return {
        "exit": child.returncode,
        "items": items,
        "calls": job.last_run(child)["calls"],
        "engine": instructions(engine_out),
        "sandbox": instructions(sandbox_out),
    }


def difference(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """What each workflow the larger run had in addition cost (None when it had none)."""
    extra = large["items"] - small["items"]

    def each(what: str, digits: int | None = None) -> float | None:
        return round((large[what] - small[what]) / extra, digits) if extra else None

    return {
        "exit": [small["exit"], large["exit"]],
        "items": [small["items"], large["items"]],
        "calls_per_workflow": each("calls", 2),
        "engine_instructions_per_workflow": each("engine"),
        "sandbox_instructions_per_workflow": each("sandbox"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="dataworks")
    parser.add_argument("--counts", default="50,250", help="two inventory sizes: the difference is measured")
    parser.add_argument("--work", type=os.path.abspath, default=str(DEFAULT_WORK / "instructions"))
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("bench/instructions.py needs valgrind on the PATH (apt-get install valgrind)", file=sys.stderr)
        return 2
    low, high = sorted(int(n) for n in args.counts.split(","))
    if not 0 < low < high:
        parser.error("--counts takes two different positive sizes")
    figures: dict[str, Any] = {"bench": "instructions", "counts": [low, high], "load_before": load()}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds.split(","):
            small, large = (measure(Path(args.work), kind, n, Path(tmp)) for n in (low, high))
            figures[kind] = difference(small, large)
            failed |= figures[kind]["exit"] != [0, 0] or large["items"] - small["items"] != high - low
    figures["load_after"] = load()
    emit(figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
