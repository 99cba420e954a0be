"""How the report's numbers read in every format: durations, offsets, moments, empty values."""

from __future__ import annotations

import time

from migrator.log import moment


def duration(seconds: float | None) -> str:
    """A duration as a person reads it at a glance: ``4.5s``, ``12m 3s``, ``2h 5m``, ``3m``; ``-``
    if unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    big, small = ((hours, "h"), (minutes, "m")) if hours else ((minutes, "m"), (secs, "s"))
    if not big[0]:
        return f"{small[0]}{small[1]}"
    return f"{big[0]}{big[1]}" + (f" {small[0]}{small[1]}" if small[0] else "")


def offset(seconds: float) -> str:
    """A point on the chart's time axis, counted from the run's start: ``0``, ``+0.5s``, ``+1m 30s``."""
    if seconds == 0:
        return "0"
    return f"+{seconds:g}s" if seconds < 10 else "+" + duration(seconds)


def per(width: float) -> str:
    """A bucket's width after "per": ``0.1s``, ``5s``, ``1m``."""
    return offset(width).lstrip("+")


def when(epoch: float | None) -> str:
    return "-" if epoch is None else moment(epoch)


def ended(start: float, end: float | None) -> str:
    """When a run ended, without repeating the date (and zone) it started on."""
    if end is None:
        return "-"
    if time.localtime(start)[:3] == time.localtime(end)[:3]:
        return time.strftime("%H:%M:%S", time.localtime(end))
    return moment(end)


def number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
