"""Latency benchmark: the migrator against a plain sequential loop with the official DataWorks SDK,
when every call takes ``--latency`` seconds (100 ms by default).

Both migrate the same sample workflows into the DataWorks sandbox with the same settings: the
sandbox's ``latency`` fault (a fixed delay before every answer) and async imports that finish
after a random ``--job-delay`` (seconds, uniform).

- **migrator**: ``migrator run`` (a child process, start-up included) with the embedded sandbox
  (``sandbox = true``, so no quota), the config's defaults otherwise (``--concurrency``, poll
  policy): reading, translating, signing, the checkpoints, ``ImportWorkflowDefinition`` and
  ``GetJobStatus`` as a user would run it.
- **sequential**: the official ``alibabacloud-dataworks-public20240518`` SDK, endpoint the
  loopback sandbox (``migrator sandbox`` with the same faults), ``protocol = http``: for each
  workflow, render its FlowSpec (the migrator's renderer), ``ImportWorkflowDefinition``, then
  ``GetJobStatus`` again at once until the job is done: the fastest a sequential loop can be.
  It is timed on the first ``--sample`` workflows and extrapolated linearly to ``--count``
  (``"sequential_sampled"`` in the output says how many were timed).

Goal (issue 8): the migrator at least 30 times faster for 1,000 workflows at 100 ms.

    python bench/latency.py                         # 1,000 workflows, 100 timed sequentially
    python bench/latency.py --count 200 --sample 20 --latency 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from alibabacloud_dataworks_public20240518 import models as dw_models
from alibabacloud_dataworks_public20240518.client import Client as DataWorksSdk
from alibabacloud_tea_openapi import models as openapi_models
from harness import DEFAULT_WORK, JobDir, emit, inventory, load, migrator, run_child, served

from migrator.inventory import read
from migrator.providers.base import UpstreamTarget
from migrator.providers.dataworks.render import render, workflow_id

FOLDER = "bench"


def sequential(info: dict[str, Any], inv: Path, sample: int) -> tuple[float, int, int]:
    """Seconds for the first ``sample`` workflows, one after the other; and imports, polls made."""
    config = openapi_models.Config(
        access_key_id=info["credentials"]["access_key_id"],
        access_key_secret=info["credentials"]["access_key_secret"],
        endpoint=urlsplit(info["endpoint"]).netloc,
        protocol="http",
        region_id="cn-hangzhou",
    )
    client = DataWorksSdk(config)
    project = int(info["project_id"])
    imported: dict[str, UpstreamTarget] = {}
    imports = polls = 0
    start = time.monotonic()
    for entry in read([inv]):
        if imports == sample:
            break
        workflow = entry.workflow
        assert workflow is not None, entry.error
        upstream = {r: imported[r] for r in workflow.upstream_workflows() if r in imported}
        _, spec, _ = render(workflow, FOLDER, upstream)
        request = dw_models.ImportWorkflowDefinitionRequest(
            project_id=project, spec=json.dumps(spec, ensure_ascii=False, separators=(",", ":"))
        )
        job = client.import_workflow_definition(request).body.async_job
        imports += 1
        while True:
            status = client.get_job_status(dw_models.GetJobStatusRequest(job_id=job.id)).body.job_status
            polls += 1
            if status.completed == "True":
                break
        if status.status != "Success":
            raise RuntimeError(f"{workflow.name}: import failed: {status.error}")
        imported[workflow.key] = UpstreamTarget(workflow.key, workflow.name, workflow_id(workflow.key))
    return time.monotonic() - start, imports, polls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="workflows the migrator migrates")
    parser.add_argument("--sample", type=int, default=100, help="workflows the sequential loop migrates")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every call")
    parser.add_argument("--job-delay", default="0.2,1.5", help="async imports take LOW,HIGH seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--work", type=os.path.abspath, default=str(DEFAULT_WORK / "latency"))
    args = parser.parse_args(argv)
    low, high = (float(x) for x in args.job_delay.split(","))
    work = Path(args.work)
    inv = inventory(work.parent, args.count)
    figures: dict[str, Any] = {
        "bench": "latency",
        "count": args.count,
        "latency_s": args.latency,
        "job_delay_s": [low, high],
        "concurrency": args.concurrency,
        "load_before": load(),
    }
    job = JobDir(
        work, "dataworks", inv, concurrency=args.concurrency, job_delay=(low, high),
        faults={"latency": {"median": args.latency}},
    ).write()  # fmt: skip
    child = run_child(migrator("run", job.job, "--config", job.config, "-q"), env=job.env())
    run = job.last_run(child)
    figures["migrator"] = {
        "exit": child.returncode,
        "states": job.states(),
        "calls": run["calls"],
        "seconds": round(child.seconds, 2),
        "run_seconds": round(run["seconds"], 2),
    }
    options = ("--job-delay", f"{low},{high}", "--fault", f"latency.median={args.latency}")
    with served(*options) as info:
        seconds, imports, polls = sequential(info["dataworks"], inv, min(args.sample, args.count))
    estimate = seconds / imports * args.count
    figures["sequential"] = {
        "seconds": round(estimate, 2),
        "sampled_seconds": round(seconds, 2),
        "polls_per_import": round(polls / imports, 2),
    }
    figures["sequential_sampled"] = imports
    figures["ratio"] = round(estimate / child.seconds, 1)
    figures["load_after"] = load()
    figures["goal_ratio"] = 30
    emit(figures)
    return 0 if child.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
