"""The benchmarks still run: each ``bench/*.py`` with its smallest options prints one JSON line
with its figures, and the counts in it match what was asked. Timings are not asserted here (the
figures live in the README's Benchmarks section); only that each benchmark measured what it says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def bench(name: str, tmp_path: Path, *options: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), *options, "--work", str(tmp_path / name)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    figures: dict[str, Any] = json.loads(lines[0])
    assert figures["bench"] == name
    assert len(figures["load_before"]) == len(figures["load_after"]) == 3
    return figures


def test_capacity(tmp_path: Path) -> None:
    figures = bench("capacity", tmp_path, "--kinds", "dataworks", "--count", "10", "--repeat", "2")
    run = figures["dataworks"]
    # every workflow imported and polled once (imports finish at once), all of it counted
    assert (run["exit"], run["items"], run["calls"]) == (0, 10, 20)
    assert run["calls_per_s"] > 0
    assert len(run["calls_per_s_runs"]) == 2
    assert run["calls_per_s"] == min(run["calls_per_s_runs"])  # the lower median of two
    assert figures["goal_calls_per_s"] == 1000


def test_latency(tmp_path: Path) -> None:
    figures = bench(
        "latency", tmp_path, "--count", "6", "--sample", "2", "--latency", "0.01", "--job-delay", "0.01,0.02"
    )
    assert figures["migrator"]["states"] == {"done": 6}
    assert figures["sequential_sampled"] == 2
    assert figures["sequential"]["polls_per_import"] >= 1
    assert figures["ratio"] > 0


def test_memory(tmp_path: Path) -> None:
    figures = bench("memory", tmp_path, "--command", "run", "--counts", "8", "--resumed", "0")
    (case,) = figures["cases"]
    assert (case["count"], case["case"], case["exit"], case["items_in_store"]) == (8, "full", 0, 8)
    assert case["maxrss_mb"] > 10  # a Python process with the sandbox loaded: never a few kB
    assert figures["max_over_min"] == 1.0


def test_resume(tmp_path: Path) -> None:
    figures = bench("resume", tmp_path, "--rows", "300", "--pending", "0.1")
    assert figures["store"] == {"done": 270, "pending": 30}
    assert 0 < figures["engine_seconds"] <= figures["seconds_to_first_submit"]


def test_polls(tmp_path: Path) -> None:
    figures = bench("polls", tmp_path, "--count", "3", "--job-delay", "0.05,0.1")
    assert (figures["exit"], figures["imports"]) == (0, 3)
    # imports finished before the first poll (2 s): one status call each, by both counts
    assert figures["polls_per_import"] == figures["store_polls_per_item"] == 1.0


def test_instructions_says_what_it_needs_without_valgrind(tmp_path: Path) -> None:
    # Under valgrind it takes minutes (its figures are in the README); here, on a PATH without
    # valgrind, it must refuse at once, say why, and measure nothing.
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "instructions.py"), "--work", str(tmp_path / "instructions")],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "needs valgrind" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "instructions").exists()
