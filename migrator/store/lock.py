"""The run lock: one process at a time changes a job's items in a state database.

An advisory ``flock`` on a small file beside the database (``<state>.<job>.lock``), held for the
whole run. The kernel releases it when its process ends, however it ends, so a lock left by a
killed run is simply free again: the next run takes it over and says whose it was. The file
holds the holder's pid, host and start time, so a refused run can say who holds the lock since
when. Readers (``status``, ``report``) take no lock: WAL lets them read while a run writes.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from migrator.errors import StoreError, StoreLockedError
from migrator.log import moment

log = structlog.get_logger(__name__)


def lock_path(state: Path, job: str) -> Path:
    return state.with_name(f"{state.name}.{job}.lock")


class RunLock:
    """``with RunLock(state, job, "run"):`` or :class:`StoreLockedError` naming the holder."""

    def __init__(self, state: Path, job: str, command: str) -> None:
        self.path = lock_path(state, job)
        self.job = job
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the run lock {self.path}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise StoreLockedError(f"job {self.job!r} is locked: {_describe(holder)}") from None
        previous = _read(fd)
        if previous.get("pid") not in (None, os.getpid()):
            log.warning("took over the run lock of an ended process", job=self.job, was=_describe(previous))
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": self.command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # released: nobody holds it, and nothing stale is left to report
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def _read(fd: int) -> dict[str, Any]:
    try:
        found = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "held by another process"
    since = moment(float(holder.get("since") or 0))
    what = holder.get("command", "run")
    return f"migrator {what} pid {holder.get('pid')} on {holder.get('host')} holds it since {since}"
