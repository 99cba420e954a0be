"""A state database that cannot be used is a clear one-line error with exit 2, never a traceback;
and `migrator status` reads it from another terminal while a run writes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from migrator.sample import generate, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def job_and_config(tmp_path: Path, state: Path, count: int = 20, latency: float = 0.0) -> tuple[Path, Path]:
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, generate(count, seed=9))
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nname = "d"\n[source]\npaths = ["{inv}"]\n[target]\nprovider = "dataworks"\n')
    config = tmp_path / "config.toml"
    config.write_text(
        f'[state]\npath = "{state}"\n[providers.dataworks]\nsandbox = true\n'
        f"[providers.dataworks.sandbox_options.faults]\nlatency = {{ median = {latency} }}\n"
    )
    return job, config


def migrator(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "migrator", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_a_corrupt_state_database_is_exit_2_with_the_file_named(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    state.write_bytes(b"this is not a database" * 100)
    job, config = job_and_config(tmp_path, state)
    for args in (("run", job, "--config", config), ("status", "--config", config)):
        result = migrator(*args)
        assert result.returncode == 2, result.stderr
        assert str(state) in result.stderr
        assert "Traceback" not in result.stderr


def test_a_state_database_that_cannot_be_created_is_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    job, config = job_and_config(tmp_path, blocker / "s.db")
    result = migrator("run", job, "--config", config)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert str(blocker) in result.stderr


def test_status_reads_while_a_run_writes(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    job, config = job_and_config(tmp_path, state, count=60, latency=0.05)
    command = [sys.executable, "-m", "migrator", "run", str(job), "--config", str(config)]
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        while run.poll() is None:
            result = migrator("status", "--config", config)
            if result.returncode == 0:
                seen.append(result.stdout)
            else:
                assert "does not exist" in result.stderr, result.stderr  # before the run created it
            time.sleep(0.2)
        assert run.returncode == 0, run.stderr.read() if run.stderr else ""
    finally:
        run.kill()
    mid_run = [s for s in seen if "running" in s]
    assert mid_run, seen
    assert migrator("status", "--config", config).stdout.startswith("d: 60/60 settled")
