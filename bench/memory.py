"""Memory benchmark: peak RSS of a ``migrator`` command over inventories of very different sizes.

The command (``--command``: ``run``, ``plan`` or ``report``) is run as a child process over
sample JSONL inventories (generated once, streamed to disk) into the embedded DataWorks sandbox,
and its peak resident set size is read from ``os.wait4`` (the kernel's ``ru_maxrss``; the
sandbox runs in the same process, so its memory counts too). Three cases:

- ``full``: each of ``--counts`` up to ``--full-up-to`` workflows, run to its end;
- ``stopped``: each larger count, interrupted (SIGINT) after ``--stop-after`` seconds, since a
  run submits only as fast as the API answers; ``items_in_store`` says how far it got;
- ``resumed``: ``--resumed`` workflows with the state database an interrupted run leaves (built
  as ``bench/resume.py`` does: all done but the last ``--pending`` share, with the read frontier
  a real run keeps), run to its end: a million rows in the store, and the pending lines read
  again at their offsets. Its ``states`` show some ``failed`` items (41 of the 1,000 pending in a
  run of 100,000): the built store's ``done`` workflows were never imported into this fresh
  sandbox, so a pending one that depends on them is refused at the sandbox (``AsyncJobFailed``:
  "no node declares the output"), as DataWorks would refuse it. That is the case's setup, not
  a fault of the run.

``--command report`` draws the HTML report of the store an interrupted run of each size leaves
(built as the resumed case is) instead.

Goal (issue 8): the same peak within 20 % whatever the size, and under 200 MB.

    python bench/memory.py                              # 10,000 and 1,000,000 (+ 1,000,000 resumed)
    python bench/memory.py --counts 2000 --resumed 0 --command plan
    python bench/memory.py --command report             # reports over 10,000 and 1,000,000 rows
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from harness import DEFAULT_WORK, JobDir, emit, inventory, load, migrator, run_child
from resume import build_store

#: What each command is run with besides the job: a plan logs nothing but warnings anyway; a
#: report draws the HTML page, every section and the chart, into a file.
EXTRA = {"run": ["-q"], "plan": [], "report": ["--format", "html", "-o", os.devnull]}


def measure(job: JobDir, command: str, stop_after: float | None) -> dict[str, Any]:
    child = run_child(
        migrator(command, job.job, "--config", job.config, *EXTRA[command]),
        env=job.env(),
        stop_after=stop_after,
    )
    if child.returncode not in (0, 1, 3):
        raise RuntimeError(f"migrator {command} exited {child.returncode}: {child.stderr[-3000:]}")
    states = job.states() if job.state.exists() else {}
    return {
        "exit": child.returncode,
        "maxrss_mb": round(child.maxrss_mb, 1),
        "seconds": round(child.seconds, 1),
        "items_in_store": sum(states.values()),
        "states": states,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", default="run", choices=sorted(EXTRA), help="the command to measure")
    parser.add_argument("--counts", default="10000,1000000")
    parser.add_argument("--full-up-to", type=int, default=10_000, help="larger counts are stopped")
    parser.add_argument(
        "--stop-after", type=float, default=180.0, help="seconds before a large run is stopped"
    )
    parser.add_argument(
        "--resumed", type=int, default=1_000_000, help="workflows of the resumed case (0: none)"
    )
    parser.add_argument("--pending", type=float, default=0.01, help="resumed: share left pending, at the end")
    parser.add_argument("--work", type=os.path.abspath, default=str(DEFAULT_WORK / "memory"))
    args = parser.parse_args(argv)
    work = Path(args.work)
    figures: dict[str, Any] = {"bench": "memory", "command": args.command, "load_before": load()}
    cases: list[dict[str, Any]] = []
    for count in (int(c) for c in args.counts.split(",")):
        job = JobDir(work / str(count), "dataworks", inventory(work.parent, count)).write()
        stop = None if count <= args.full_up_to or args.command == "report" else args.stop_after
        if args.command == "report":  # over the store an interrupted run of that size leaves
            built = build_store(job.state, job.inventory, count, args.pending, "end")
            what = f"store: {built['done']} done, {built['pending']} pending"
        else:
            what = "full" if stop is None else f"stopped after {stop:g} s"
        cases.append({"count": count, "case": what} | measure(job, args.command, stop))
    if args.resumed and args.command != "report":
        job = JobDir(
            work / f"{args.resumed}-resumed", "dataworks", inventory(work.parent, args.resumed)
        ).write()
        built = build_store(job.state, job.inventory, args.resumed, args.pending, "end")
        case = {"count": args.resumed, "case": f"resumed: {built['done']} done, {built['pending']} pending"}
        cases.append(case | measure(job, args.command, None))
    peaks = [c["maxrss_mb"] for c in cases]
    figures.update(
        {
            "cases": cases,
            "max_over_min": round(max(peaks) / min(peaks), 3),
            "load_after": load(),
            "goal_mb": 200,
            "goal_max_over_min": 1.2,
        }
    )
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
