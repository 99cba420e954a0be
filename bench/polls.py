"""Polling benchmark: ``GetJobStatus`` calls per DataWorks import when async imports take 1 to 10 s.

``migrator run`` migrates ``--count`` sample workflows into the embedded DataWorks sandbox whose
imports finish after a random ``--job-delay`` (uniform, seconds: the ``job_delay`` sandbox
option), with the config's default poll policy (first poll after 2 s, then doubling). The figure
is the sandbox's own count of ``GetJobStatus`` calls over its count of
``ImportWorkflowDefinition`` calls (``/_sandbox/calls``); the store's ``polls`` per item, as the
engine counted them, is printed beside it with its distribution.

Goal (issue 8): at most 3 status calls per import on average.

    python bench/polls.py                       # 200 workflows, imports of 1-10 s
    python bench/polls.py --count 50 --job-delay 0.5,3
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from harness import DEFAULT_WORK, JobDir, emit, inventory, load, migrator, run_child

from migrator.sandbox.server import inspect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--job-delay", default="1,10", help="async imports take LOW,HIGH seconds")
    parser.add_argument("--work", type=os.path.abspath, default=str(DEFAULT_WORK / "polls"))
    args = parser.parse_args(argv)
    low, high = (float(x) for x in args.job_delay.split(","))
    work = Path(args.work)
    inv = inventory(work.parent, args.count)
    figures: dict[str, Any] = {"bench": "polls", "count": args.count, "job_delay_s": [low, high]}
    figures["load_before"] = load()
    job = JobDir(work, "dataworks", inv, job_delay=(low, high)).write()
    child = run_child(migrator("run", job.job, "--config", job.config, "-q"), env=job.env())
    run = job.last_run(child)
    _, calls = anyio.run(inspect, "dataworks", job.sandbox_data())
    imports = sum(calls.get("ImportWorkflowDefinition", {}).values())
    status = sum(calls.get("GetJobStatus", {}).values())
    per_item = dict(job.rows("SELECT polls, COUNT(*) FROM items GROUP BY polls ORDER BY polls"))
    items = sum(per_item.values())
    figures.update(
        {
            "exit": child.returncode,
            "states": job.states(),
            "seconds": round(run["seconds"], 2),
            "imports": imports,
            "status_calls": status,
            "polls_per_import": round(status / imports, 2) if imports else None,
            "store_polls_per_item": round(sum(p * n for p, n in per_item.items()) / items, 2),
            "items_by_polls": {str(p): n for p, n in per_item.items()},
            "load_after": load(),
            "goal_polls_per_import": 3,
        }
    )
    emit(figures)
    return 0 if child.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
