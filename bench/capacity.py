"""Capacity benchmark: API calls per second of a whole `migrator run`, with nothing to wait for.

For each provider it migrates ``--count`` sample workflows with ``migrator run`` (a child
process, as a user runs it) into a sandbox with no latency, no quota and async imports that
finish at once, polled at once: reading the JSONL inventory, validating, translating, signing,
HTTP over loopback, and every checkpoint committed in a real SQLite state database. The figure
is the calls the run made (its ``runs.calls`` in the store) over the run's own duration
(``ended_at - started_at``: process start-up and imports are left out).

``--sandbox embedded`` (default): the sandbox runs inside the migrator process, as a job with
``sandbox = true`` has it, so both share one Python thread. ``--sandbox served``: it runs in a
``migrator sandbox`` process of its own (the other core), which shows the engine's own ceiling.

Goal (issue 8): at least 1,000 calls/s on 2 cores. The load average before and after is printed:
other work on the machine lowers the figure.

``--repeat N`` runs every provider N times, round robin (this VM's speed drifts by a fifth over
minutes, so one run proves little): each provider's figures are then those of its median run,
with every run's calls/s in ``calls_per_s_runs``.

    python bench/capacity.py                               # 2,000 workflows into each provider
    python bench/capacity.py --sandbox served --repeat 3   # the README's figures
    python bench/capacity.py --kinds dataworks --count 500 --sandbox served
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from harness import DEFAULT_WORK, JobDir, cpu_seconds, emit, inventory, load, migrator, run_child, served

KINDS = ("dataworks", "emr", "enos")
#: Async imports finish at once and are polled at once: nothing but the engine's work to wait for.
POLL = {"initial": 0.01, "factor": 1.5, "max": 0.2}
NONE = (0.0, 0.0)  # async jobs take no time


def measure(job: JobDir) -> dict[str, Any]:
    child = run_child(migrator("run", job.job, "--config", job.config, "-q"), env=job.env())
    run = job.last_run(child)
    items = sum(job.states().values())
    return {
        "exit": child.returncode,
        "items": items,
        "calls": run["calls"],
        "seconds": round(run["seconds"], 2),
        "wall_seconds": round(child.seconds, 2),
        "calls_per_s": round(run["calls"] / run["seconds"], 1),
        "items_per_s": round(items / run["seconds"], 1),
        "calls_per_item": round(run["calls"] / items, 2) if items else None,
        "cpu_seconds": round(child.cpu_seconds, 2),
        "cpu_ms_per_call": round(child.cpu_seconds * 1000 / run["calls"], 3),
        "maxrss_mb": round(child.maxrss_mb, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--count", type=int, default=2000, help="workflows per provider")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sandbox", choices=("embedded", "served"), default="embedded")
    parser.add_argument("--repeat", type=int, default=1, help="runs per provider; the median run is shown")
    parser.add_argument("--work", type=os.path.abspath, default=str(DEFAULT_WORK / "capacity"))
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",")
    work = Path(args.work)
    inv = inventory(work.parent, args.count)
    figures: dict[str, Any] = {
        "bench": "capacity",
        "count": args.count,
        "concurrency": args.concurrency,
        "sandbox": args.sandbox,
        "cpus": os.cpu_count(),
        "load_before": load(),
    }
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for _ in range(args.repeat):
        for kind in kinds:
            job = JobDir(work / kind, kind, inv, concurrency=args.concurrency, job_delay=NONE, poll=POLL)
            if args.sandbox == "served":
                with served("--job-delay", "0,0") as info:
                    job.served = info[kind]
                    before = cpu_seconds(info["pid"])
                    run = measure(job.write())
                    sandbox = cpu_seconds(info["pid"]) - before
                    run["sandbox_cpu_seconds"] = round(sandbox, 2)
                    run["sandbox_cpu_ms_per_call"] = round(sandbox * 1000 / run["calls"], 3)
            else:
                run = measure(job.write())
            runs[kind].append(run)
    for kind, done in runs.items():
        median = sorted(done, key=lambda r: r["calls_per_s"])[(len(done) - 1) // 2]
        figures[kind] = {**median, "calls_per_s_runs": [r["calls_per_s"] for r in done]}
    figures["load_after"] = load()
    figures["goal_calls_per_s"] = 1000
    emit(figures)
    return 0 if all(r["exit"] == 0 for done in runs.values() for r in done) else 1


if __name__ == "__main__":
    sys.exit(main())
