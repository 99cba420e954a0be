"""Retries and timeouts in each target's units and ranges, with a warning for every change.

The canonical model holds seconds (floats). Targets want whole numbers in their own unit (EMR
seconds; DataWorks seconds for ``timeout`` and milliseconds for ``rerunInterval``; EnOS whole
numbers) and some bound them (EMR ``MaxRetry`` 0-5, ``RetryInterval`` 0-300 s). Each renderer
describes its target with a :class:`Limits` and asks :func:`convert`; what was rounded or clamped
comes back through ``warn`` as a ``retries`` or ``timeout`` warning naming the task and both values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from migrator.model import Task

__all__ = ["Converted", "Limits", "convert"]

Warn = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class Limits:
    """A target's units (how many per second) and upper bounds (None: none documented)."""

    target: str
    interval_unit: str = "s"
    interval_per_second: int = 1
    max_retries: int | None = None
    max_interval: int | None = None  # seconds


@dataclass(frozen=True, slots=True)
class Converted:
    """What to send: retries, the interval in the target's unit, the timeout in whole seconds
    (0: no timeout)."""

    retries: int
    interval: int
    timeout: int


def convert(task: Task, limits: Limits, warn: Warn) -> Converted:
    """``task``'s retries, retry interval and timeout as ``limits``' target takes them.

    Counts and intervals beyond a bound are clamped to it; an interval is rounded to the nearest
    unit; a timeout is rounded *up* to a whole second (a shorter limit would kill runs the source
    let finish, and a fraction below one second must not become 0, which means no limit).
    """
    name, target = task.name, limits.target
    retries = task.max_retries
    if limits.max_retries is not None and retries > limits.max_retries:
        warn("retries", f"task {name!r}: max_retries {retries} clamped to {target}'s {limits.max_retries}")
        retries = limits.max_retries
    seconds = task.retry_interval
    if limits.max_interval is not None and seconds > limits.max_interval:
        warn(
            "retries",
            f"task {name!r}: retry_interval {seconds:g}s clamped to {target}'s {limits.max_interval}s",
        )
        seconds = limits.max_interval
    interval = round(seconds * limits.interval_per_second)
    if interval != seconds * limits.interval_per_second:
        warn(
            "retries",
            f"task {name!r}: retry_interval {seconds:g}s rounded to {interval}{limits.interval_unit}",
        )
    timeout = math.ceil(task.timeout) if task.timeout else 0
    if task.timeout and timeout != task.timeout:
        warn("timeout", f"task {name!r}: timeout {task.timeout:g}s rounded up to {timeout}s")
    return Converted(retries, interval, timeout)
