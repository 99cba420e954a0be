"""The run lock: one process per job and state database; a killed holder's lock is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrator.errors import StoreLockedError
from migrator.sample import generate, write_jsonl
from migrator.store.lock import RunLock, lock_path

ROOT = Path(__file__).resolve().parents[2]


def test_a_second_holder_is_refused_with_the_first_ones_pid_and_time(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    with RunLock(state, "j", "run"):
        with pytest.raises(StoreLockedError) as refused, RunLock(state, "j", "retry"):
            pass
        assert f"migrator run pid {os.getpid()}" in str(refused.value)
        with RunLock(state, "other-job", "run"):  # another job of the same store is not locked
            pass
    with RunLock(state, "j", "run"):  # released on exit
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    state = tmp_path / "s.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from migrator.store.lock import RunLock\n"
            "with RunLock(Path(sys.argv[1]), 'j', 'run'):\n    print('held', flush=True); time.sleep(60)",
            str(state),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"), RunLock(state, "j", "run"):
        pass
    holder.kill()
    holder.wait(timeout=10)
    left = json.loads(lock_path(state, "j").read_text())
    assert left["pid"] == holder.pid  # the killed process could not clean up...
    with RunLock(state, "j", "run"):  # ...but its lock died with it
        assert json.loads(lock_path(state, "j").read_text())["pid"] == os.getpid()


def test_two_concurrent_runs_one_runs_the_other_exits_3_naming_the_holder(tmp_path: Path) -> None:
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, generate(40, seed=5))
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nname = "two"\n[source]\npaths = ["{inv}"]\n[target]\nprovider = "dataworks"\n')
    config = tmp_path / "config.toml"
    config.write_text(
        '[state]\npath = "s.db"\n[providers.dataworks]\nsandbox = true\n'
        "[providers.dataworks.sandbox_options.faults]\nlatency = { median = 0.05 }\n"
    )
    command = [sys.executable, "-m", "migrator", "run", str(job), "--config", str(config)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        lock = lock_path(tmp_path / "s.db", "two")
        while not (lock.exists() and lock.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 3, second.stderr
        assert f"pid {first.pid}" in second.stderr
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err[-2000:]
    finally:
        first.kill()
