"""What the engine's end-to-end tests share: the command line as a subprocess, a job with its
config against one sandbox, reading the state database, and what "nothing made twice" means at
each sandbox.

Imported as ``tests.engine.support`` (pytest's importlib mode registers the ``tests`` packages).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from pydantic import SecretStr

from migrator.config import PollPolicy, ProviderConfig
from migrator.engine.target import sandbox_data_path
from migrator.model import Workflow
from migrator.sample import write_jsonl
from migrator.sandbox.server import SandboxHandle, inspect

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("dataworks", "emr", "enos")
#: Polls soon and often: a test's async imports finish in a fraction of a second.
FAST = PollPolicy(initial=0.05, factor=1.5, max=0.2, deadline=30)


def provider_config(handle: SandboxHandle, **kw: Any) -> ProviderConfig:
    """The config of a DataWorks provider that talks to a running sandbox ``handle``."""
    return ProviderConfig(
        **{
            "name": "dw",
            "kind": "dataworks",
            "endpoint": handle.endpoint,
            "project_id": handle.identity["project_id"],
            "access_key_id": SecretStr(handle.credentials["access_key_id"]),
            "access_key_secret": SecretStr(handle.credentials["access_key_secret"]),
            "concurrency": 8,
            "poll": FAST,
            **kw,
        }
    )


def migrator(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "migrator", *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False, env=env
    )


def assert_once(kind: str, objects: dict[str, Any], workflows: Iterable[Workflow]) -> None:
    """One object per workflow (and per task, for EMR's jobs) in a sandbox's inspection answer."""
    workflows = list(workflows)
    names = sorted(w.name for w in workflows)
    if kind == "dataworks":
        defs = Counter(d["name"] for d in objects["workflow_definitions"])
    elif kind == "emr":
        defs = Counter(f["name"] for f in objects["flows"])
        jobs = Counter(j["name"] for j in objects["jobs"])
        assert max(jobs.values()) == 1, [n for n, c in jobs.items() if c > 1]
        assert len(jobs) == sum(len(w.tasks) for w in workflows)
    else:
        defs = Counter(f["flowName"] for f in objects["flows"])
    assert max(defs.values()) == 1, [n for n, c in defs.items() if c > 1]
    assert sorted(defs) == names


@dataclass
class Harness:
    """One job into one embedded sandbox whose faults the test sets."""

    tmp: Path
    kind: str
    workflows: list[Workflow]
    options: str
    concurrency: int = 16
    poll: str = "initial = 0.1\nfactor = 1.5\nmax = 0.5\ndeadline = 3"
    data: Path | None = None
    """The sandbox's data file, when it is not the embedded sandbox's (beside the state)."""

    @property
    def job(self) -> Path:
        return self.tmp / "job.toml"

    @property
    def config(self) -> Path:
        return self.tmp / "config.toml"

    @property
    def state(self) -> Path:
        return self.tmp / "state.db"

    def write(self, faults: str) -> None:
        inv = self.tmp / "inv.jsonl"
        if not inv.exists():
            write_jsonl(inv, self.workflows)
        self.job.write_text(
            f'[job]\nname = "f"\n[source]\npaths = ["{inv}"]\n'
            f'[target]\nprovider = "{self.kind}"\nfolder = "mig"\nsubmitter = "etl"\n'
        )
        self.config.write_text(
            f'[state]\npath = "state.db"\n[providers.{self.kind}]\nsandbox = true\n'
            f"concurrency = {self.concurrency}\n{self.options}\n"
            f"[providers.{self.kind}.poll]\n{self.poll}\n"
            f"[providers.{self.kind}.sandbox_options]\njob_delay = [0.05, 0.3]\n"
            f"[providers.{self.kind}.sandbox_options.faults]\nseed = 7\n{faults}\n"
        )

    def run(self) -> subprocess.CompletedProcess[str]:
        return migrator("run", self.job, "--config", self.config)

    def converge(self, runs: int = 4) -> list[subprocess.CompletedProcess[str]]:
        """Run the job again while a run ends with work left (exit 3), as a cron job would."""
        done: list[subprocess.CompletedProcess[str]] = []
        for _ in range(runs):
            result = self.run()
            done.append(result)
            assert result.returncode in (0, 1, 3), result.stderr[-3000:]
            if result.returncode != 3:
                return done
        raise AssertionError(f"still unsettled after {runs} runs: {done[-1].stderr[-3000:]}")

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Read the state database as another terminal would. Not read-only: after a SIGKILL only
        a connection that may write can recover the WAL."""
        conn = sqlite3.connect(self.state, timeout=10)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def states(self) -> dict[str, int]:
        return dict(self.rows("SELECT state, COUNT(*) FROM items GROUP BY state"))

    def cost(self) -> tuple[int, int, int]:
        """Calls, retries and throttles over every run."""
        row = self.rows("SELECT SUM(calls), SUM(retries), SUM(throttled) FROM runs")[0]
        return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

    def sandbox(self) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
        data = self.data or sandbox_data_path(self.state, self.kind)
        return anyio.run(inspect, self.kind, data)

    def assert_nothing_twice(self) -> dict[str, Any]:
        """One object per workflow (and per task, for EMR's jobs) at the target."""
        objects, _ = self.sandbox()
        assert_once(self.kind, objects, self.workflows)
        return objects

    def assert_retries_within_budget(self) -> None:
        """Each retry answered an error the sandbox gave (or a connection it dropped or held), and
        no run spent its retry budget (which would have stopped it, saying so)."""
        _, calls = self.sandbox()
        outcomes: Counter[str] = Counter()
        for by_outcome in calls.values():
            outcomes.update(by_outcome)
        errors = sum(n for outcome, n in outcomes.items() if outcome not in ("ok", "0"))
        _, retries, _ = self.cost()
        assert 0 < retries <= errors, (retries, outcomes)
        stops = [s for (s,) in self.rows("SELECT stopped FROM runs WHERE stopped IS NOT NULL")]
        assert not any("retry budget" in s for s in stops), stops
