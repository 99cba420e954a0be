"""Schedule rules shared by every target: the cron dialects each one accepts."""

from __future__ import annotations

import re
from functools import lru_cache

from migrator.errors import TranslationError
from migrator.model import Workflow
from migrator.translate.cron import CronError, Dialect, parse

__all__ = ["CronError", "cron_for", "enos_cron", "quartz_from_enos"]


def cron_for(wf: Workflow, dialect: Dialect) -> str:
    """The workflow's cron (canonical Quartz) in a target's ``dialect``.

    What the dialect cannot express (a year restriction, seconds, ``W`` in DataWorks) makes the
    item invalid with the reason; nothing is approximated.
    """
    assert wf.schedule is not None
    try:
        return _in_dialect(wf.schedule.cron, dialect)
    except CronError as exc:
        raise TranslationError(f"workflow {wf.name!r}: schedule.{exc}") from None


@lru_cache(maxsize=4096)
def _in_dialect(quartz: str, dialect: Dialect) -> str:
    """Remembered: an inventory's thousands of workflows share a few hundred crons, and parsing
    one was a thirtieth of the engine's time per workflow. A refused cron is not remembered."""
    return parse(quartz, Dialect.QUARTZ).render(dialect)


# --- EnOS Batch Processing: 7-field cron plus a cycle ----------------------------------------------

#: EnOS ``cycle`` values, coarsest first: month, week, day, hour, minute.
ENOS_CYCLES: tuple[str, ...] = ("M", "W", "D", "H", "mi")
#: Quartz fields (seconds first) and their full ranges: ``lo-hi`` or ``lo/1`` restrict nothing.
_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("seconds", 0, 59),
    ("minutes", 0, 59),
    ("hours", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 1, 7),
)
_ANY, _STEP, _FIXED = "any", "step", "fixed"
#: (field index, cycle), finest first: a minute or hour field that repeats (a step or every value)
#: makes the cycle that unit; otherwise a fixed day of month or day of week does; otherwise a day.
_CYCLE_IF_REPEATING: tuple[tuple[int, str], ...] = ((1, "mi"), (2, "H"))
_CYCLE_IF_FIXED: tuple[tuple[int, str], ...] = ((3, "M"), (5, "W"))
_NO_YEAR = frozenset({"*", "?"})


def _item(value: str) -> re.Pattern[str]:
    """One comma-separated item of a Quartz field: ``*``, ``?``, ``L``, a value or range, ``L``/``W``/
    ``#n`` forms, with an optional ``/step``. Loose (bounds are not checked), but rejects non-cron."""
    return re.compile(rf"(?:\*|\?|L(?:W|-\d{{1,2}})?|{value}(?:-{value})?(?:L|W|#\d)?)(?:/\d{{1,2}})?")


#: Item patterns per field: month and day of week may use names (JAN, MON).
_ITEMS: tuple[re.Pattern[str], ...] = (*[_item(r"\d{1,2}")] * 4, *[_item(r"(?:\d{1,2}|[A-Za-z]{3})")] * 2)


def _restriction(value: str, lo: int, hi: int) -> str:
    """Whether a field restricts nothing (``*``, ``?``, ``0-23``, ``*/1``), repeats (a step) or is fixed."""
    if value in ("*", "?", f"{lo}-{hi}"):
        return _ANY
    if "/" in value:
        base, _, step = value.partition("/")
        return _ANY if step == "1" and base in ("*", str(lo), f"{lo}-{hi}") else _STEP
    return _FIXED


def _enos_cycle(cron: str, fields: list[str]) -> str:
    """The cycle a 6-field Quartz cron fires per (see :func:`enos_cron`)."""
    kinds = [_restriction(v, lo, hi) for v, (_, lo, hi) in zip(fields, _FIELDS, strict=True)]
    if kinds[0] != _FIXED:
        raise CronError(cron, "the seconds field repeats within a minute; EnOS's shortest cycle is a minute")
    if kinds[3] == _FIXED and kinds[5] == _FIXED:
        raise CronError(cron, "both day-of-month and day-of-week are restricted (Quartz needs ? in one)")
    for index, cycle in _CYCLE_IF_REPEATING:
        if kinds[index] != _FIXED:
            return cycle
    for index, cycle in _CYCLE_IF_FIXED:
        if kinds[index] == _FIXED:
            return cycle
    return "D"


def _six(cron: str) -> list[str]:
    fields = cron.split()
    if len(fields) == 7 and fields[6] in _NO_YEAR:
        fields = fields[:6]
    if len(fields) != 6:
        raise CronError(cron, "is not a 6-field Quartz expression (or 7 fields with an unrestricted year)")
    for value, (name, _, _), pattern in zip(fields, _FIELDS, _ITEMS, strict=True):
        if not all(pattern.fullmatch(item) for item in value.split(",")):
            raise CronError(cron, f"the {name} field is not Quartz syntax")
    return fields


def enos_cron(quartz: str) -> tuple[str, str]:
    """A 6-field Quartz cron (as :func:`cron_for` gives it) as EnOS's 7-field cron and its ``cycle``.

    EnOS wants the period unit next to the cron, and the two must agree. A field is *fixed* when it
    names values (a value, list or range) rather than ``*``/``?`` or a step. Finest first: minutes
    not fixed (a step, every minute) -> ``mi``; hours not fixed with a fixed minute -> ``H``; then a
    fixed day of month -> ``M``, a fixed day of week -> ``W``, else ``D`` (fixed hour and minute).
    The cron itself (fire times within the cycle, month restrictions, steps) is passed on unchanged
    with a ``*`` year; both sides number the days of the week the Quartz way. A cron firing more
    often than once a minute fits no cycle and raises :class:`CronError`.
    """
    fields = _six(quartz)
    cycle = _enos_cycle(quartz, fields)
    return f"{' '.join(fields)} *", cycle


def quartz_from_enos(cron: str, cycle: str) -> str:
    """EnOS's 7-field cron (6 accepted too) back to 6-field Quartz, checking ``cycle`` agrees with it."""
    if cycle not in ENOS_CYCLES:
        raise CronError(cron, f"cycle is not one of {', '.join(ENOS_CYCLES)}")
    fields = _six(cron)
    fires = _enos_cycle(cron, fields)
    if fires != cycle:
        raise CronError(
            cron,
            "cycle does not agree with the cron (minutes repeating: mi; hours repeating: H; else a "
            "fixed day of month: M; a fixed day of week: W; otherwise D)",
        )
    return " ".join(fields)
