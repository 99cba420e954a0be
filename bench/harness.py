"""What the benchmarks share: sample inventories cached on disk, a job and config into an embedded
or served sandbox, ``migrator`` run as a child process (its peak RSS read with ``os.wait4``), the
state database read as another terminal would, and the machine's load around a measurement.

Each benchmark is one command that prints one JSON line of figures (``python bench/NAME.py``);
this module is imported by them (``bench/`` is first on ``sys.path`` when a script runs) and is
no benchmark itself.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORK = Path(tempfile.gettempdir()) / "migrator-bench"
#: A sandbox's POP gateway and the EnOS APIM refuse nothing by default; these make the account's
#: limits "none" for a served sandbox too (a non-sandbox provider otherwise gets the edition quota).
NO_QUOTA = 1_000_000


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``migrator`` child: this checkout's package first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages: other work on the machine skews every figure."""
    return [round(x, 2) for x in os.getloadavg()]


def emit(figures: dict[str, Any]) -> None:
    """The benchmark's one line of output."""
    print(json.dumps(figures, separators=(",", ":")), flush=True)


def inventory(work: Path, count: int, *, seed: int = 7) -> Path:
    """A sample inventory of ``count`` workflows, generated once (streamed) and kept in ``work``."""
    path = work / f"inventory-{seed}-{count}.jsonl"
    if path.exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    subprocess.run(
        [sys.executable, "-m", "migrator.sample", str(count), str(partial), "--seed", str(seed)],
        check=True,
        env=child_env(),
        stderr=subprocess.DEVNULL,
    )
    partial.rename(path)
    return path


@dataclass
class JobDir:
    """A job, its config and its state database in one directory, targeting one provider kind.

    Embedded (``endpoint`` None): the provider is ``sandbox = true`` with ``job_delay`` and
    ``faults``. Served: the provider points at a ``migrator sandbox`` process (``served`` is the
    kind's entry of its JSON line), with no quota and the credentials in the child's environment.
    """

    path: Path
    kind: str
    inventory: Path
    concurrency: int = 16
    job_delay: tuple[float, float] = (0.2, 1.5)
    poll: Mapping[str, float] = field(default_factory=dict)
    faults: Mapping[str, Any] = field(default_factory=dict)
    served: Mapping[str, Any] | None = None

    @property
    def job(self) -> Path:
        return self.path / "job.toml"

    @property
    def config(self) -> Path:
        return self.path / "config.toml"

    @property
    def state(self) -> Path:
        return self.path / "state.db"

    def write(self, *, fresh: bool = True) -> JobDir:
        if fresh and self.path.exists():
            for old in self.path.iterdir():
                old.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        self.job.write_text(
            f'[job]\nname = "bench"\n[source]\npaths = ["{self.inventory}"]\n'
            f'[target]\nprovider = "{self.kind}"\nfolder = "bench"\nsubmitter = "etl"\n'
        )
        lines = [
            '[state]\npath = "state.db"',
            f"[providers.{self.kind}]",
            f"concurrency = {self.concurrency}",
        ]
        if self.served is None:
            lines.append("sandbox = true")
        else:
            lines += [f'endpoint = "{self.served["endpoint"]}"']
            lines += [f"{q} = {NO_QUOTA}" for q in ("qps", "read_qps", "write_qps")]
            lines += [f'{k} = "{self.served[k]}"' for k in ("project_id", "cluster_id") if k in self.served]
            creds = self.served["credentials"]
            lines += [f'{k} = "{creds[k]}"' for k in ("user_id", "org_id") if k in creds]
            lines += [
                f"[providers.{self.kind}.credentials]",
                'access_key_id = "$BENCH_ACCESS_KEY_ID"',
                'access_key_secret = "$BENCH_ACCESS_KEY_SECRET"',
            ]
        if self.poll:
            lines.append(f"[providers.{self.kind}.poll]")
            lines += [f"{k} = {v}" for k, v in self.poll.items()]
        if self.served is None:
            low, high = self.job_delay
            lines += [f"[providers.{self.kind}.sandbox_options]", f"job_delay = [{low}, {high}]"]
            lines.append(f"[providers.{self.kind}.sandbox_options.faults]")
            lines += [f"{k} = {_toml(v)}" for k, v in self.faults.items()]
        self.config.write_text("\n".join(lines) + "\n")
        return self

    def env(self) -> dict[str, str]:
        if self.served is None:
            return child_env()
        creds = self.served["credentials"]
        return child_env(
            {
                "BENCH_ACCESS_KEY_ID": creds.get("access_key_id") or creds["app_key"],
                "BENCH_ACCESS_KEY_SECRET": creds.get("access_key_secret") or creds["app_secret"],
            }
        )

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.state, timeout=30)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def states(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self.rows("SELECT state, COUNT(*) FROM items GROUP BY state")}

    def last_run(self, child: Child | None = None) -> dict[str, Any]:
        """The latest run as the store recorded it: calls, and seconds from its start to its end.

        ``child``: the process that ran it, whose output explains a run that never started.
        """
        if child is not None and child.returncode not in (0, 1, 3):
            raise RuntimeError(f"migrator run exited {child.returncode}: {child.stderr[-3000:]}")
        row = self.rows("SELECT calls, started_at, ended_at, outcome FROM runs ORDER BY id DESC LIMIT 1")[0]
        calls, started, ended, outcome = row
        return {"calls": calls or 0, "seconds": (ended or time.time()) - started, "outcome": outcome}

    def sandbox_data(self) -> Path:
        """The embedded sandbox's data file (beside the state: see migrator.engine.target)."""
        return self.state.with_name(f"{self.state.stem}.sandbox-{self.kind}.db")


def _toml(value: Any) -> str:
    """A TOML value: numbers, strings and (inline) tables of them."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@dataclass
class Child:
    """A finished child process: exit code, wall time, peak resident memory, what it said."""

    returncode: int
    seconds: float
    maxrss_mb: float
    stderr: str
    cpu_seconds: float = 0.0
    interrupted: bool = False


def run_child(
    args: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    stop_after: float | None = None,
    timeout: float = 3600,
) -> Child:
    """Run ``args`` and read its peak RSS from ``os.wait4`` (the kernel's own ``ru_maxrss``).

    ``stop_after``: send SIGINT after that many seconds (a run then checkpoints and exits 3).
    """
    with tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(args, env=dict(env or child_env()), cwd=cwd, stdout=err, stderr=err)
        interrupted = False
        deadline = start + (stop_after if stop_after is not None else timeout)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() >= deadline and not interrupted:
                proc.send_signal(signal.SIGINT if stop_after is not None else signal.SIGKILL)
                interrupted = True
                deadline = time.monotonic() + 120  # then the hard timeout
            elif interrupted and time.monotonic() >= deadline:
                proc.kill()
            time.sleep(0.02)
        seconds = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        text = err.read().decode("utf-8", errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return Child(proc.returncode, seconds, usage.ru_maxrss / 1024, text, cpu, interrupted)


def migrator(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "migrator", *map(str, args)]


@contextmanager
def served(
    *options: str, wrap: list[str] | None = None, stop_timeout: float = 30
) -> Iterator[dict[str, Any]]:
    """``migrator sandbox OPTIONS`` in its own process; yields its JSON line (endpoints, credentials)
    with the process id added as ``pid``. ``wrap`` prefixes the command (a profiler), and the
    sandbox gets ``stop_timeout`` seconds to exit once it is told to stop."""
    proc = subprocess.Popen(
        [*(wrap or []), *migrator("sandbox", *options)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=child_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("migrator sandbox exited before it was ready")
        info = json.loads(line)
        info["pid"] = proc.pid
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=stop_timeout)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
