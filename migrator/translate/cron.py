"""Cron dialects: parse each platform's form into one canonical Quartz cron, and render it back.

The canonical form is what the model holds (``Schedule.cron``): Quartz, seconds first, six
fields (a seventh, the year, only when it restricts something), ``?`` in the unused day field and
days of the week numbered the Quartz way, 1 = Sunday to 7 = Saturday, names turned into numbers.

The dialects differ in exactly the places a translation goes wrong silently:

==========  ======  ========================  =============================================
dialect     fields  day of week               also
==========  ======  ========================  =============================================
quartz      6 or 7  1 = SUN .. 7 = SAT        the model's form; ``L``, ``W``, ``#``
emr         6       1 = SUN .. 7 = SAT        Quartz without a year (EMR Data Development)
dataworks   6       1 = MON .. 7 = SUN (0 =   Spring ``CronSequenceGenerator`` plus ``L`` and
                    SUN too)                  ``#``; seconds must be 0; no year, no ``W``
enos        7       1 = SUN .. 7 = SAT        Quartz with a ``*`` year (the cycle is separate:
                                              :mod:`migrator.translate.schedule`)
unix        5       0 or 7 = SUN, 1 = MON     no seconds, no ``?``/``L``/``W``/``#``; day of
                                              month *or* day of week when both are restricted
==========  ======  ========================  =============================================

A day of week is renumbered as a set of days: plain days come out sorted, runs of three or more as
ranges (so a range that wraps once renumbered, or a step, is spelled out), and ``n#k``/``nL``
keep their shape. What a dialect cannot express
(seconds, a year, ``W``, Unix's "either day" rule) raises :class:`CronError` with the reason,
never a silent approximation.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from migrator.errors import TranslationError


class Dialect(StrEnum):
    QUARTZ = "quartz"
    EMR = "emr"
    DATAWORKS = "dataworks"
    ENOS = "enos"
    UNIX = "unix"


class CronError(TranslationError):
    """A cron that cannot be read in, or expressed in, a dialect; ``reason`` says why."""

    def __init__(self, cron: str, reason: str) -> None:
        super().__init__(f"cron {cron!r}: {reason}")
        self.cron = cron
        self.reason = reason


_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_UNRESTRICTED = frozenset({"*", "?"})
_ITEM = re.compile(r"(?P<base>\*|L|LW|L-\d+|\d+(?:-\d+)?(?:L|W|#\d)?)(?:/(?P<step>\d+))?")


def _quartz_day(value: int, dialect: Dialect) -> int:
    """A day-of-week number of ``dialect`` as Quartz's (1 = Sunday)."""
    if dialect is Dialect.DATAWORKS:
        return 1 if value in (0, 7) else value + 1
    if dialect is Dialect.UNIX:
        return value % 7 + 1
    return value


def _dialect_day(quartz: int, dialect: Dialect) -> int:
    """A Quartz day-of-week number (1 = Sunday) in ``dialect``'s numbering."""
    if dialect is Dialect.DATAWORKS:
        return 7 if quartz == 1 else quartz - 1
    if dialect is Dialect.UNIX:
        return quartz - 1
    return quartz


def _day_range(dialect: Dialect) -> tuple[int, int]:
    return (0, 7) if dialect in (Dialect.DATAWORKS, Dialect.UNIX) else (1, 7)


def _names(value: str, names: dict[str, int]) -> str:
    upper = value.upper()
    for name, number in names.items():
        upper = re.sub(rf"\b{name}\b", str(number), upper)
    return upper


def _runs(days: set[int]) -> list[str]:
    """Sorted day numbers, three or more in a row as a range: one spelling per set of days."""
    out: list[str] = []
    ordered = sorted(days)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{ordered[i]}-{ordered[j]}")
        else:
            out.extend(str(d) for d in ordered[i : j + 1])
        i = j + 1
    return out


def _renumber_days(cron: str, value: str, frm: Dialect, to: Dialect) -> str:
    """The day-of-week field ``value`` of dialect ``frm`` in dialect ``to``'s numbering.

    Plain days come out as a sorted set (:func:`_runs`), so that equal sets of days are spelled
    alike whatever dialect they were read from; ``nL`` and ``n#k`` items follow them.
    """
    if value in _UNRESTRICTED:
        return value
    lo, hi = _day_range(frm)
    days: set[int] = set()
    special: list[str] = []
    for item in value.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise CronError(cron, f"day-of-week item {item!r} is not cron syntax")
        base, step = match["base"], match["step"]
        if base == "L" and step is None:  # Quartz: L alone is the last day of the week, Saturday
            base = "7"
        if base.startswith("L") or "W" in base:
            raise CronError(cron, f"day-of-week item {item!r} is not valid")
        suffix = ""
        for mark in ("L", "#"):
            if mark in base:
                base, _, rest = base.partition(mark)
                suffix = mark + rest
        if suffix:
            if step is not None or "-" in base:
                raise CronError(cron, f"day-of-week item {item!r} mixes a range or step with {suffix[0]}")
            if suffix.startswith("#") and not 1 <= int(suffix[1:]) <= 5:
                raise CronError(cron, f"day of week: a month has no week {suffix[1:]}")
            if not lo <= int(base) <= hi:
                raise CronError(cron, f"day of week {int(base)} is out of range {lo}-{hi}")
            special.append(f"{_dialect_day(_quartz_day(int(base), frm), to)}{suffix}")
            continue
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            first, last = (int(v) for v in base.split("-"))
        else:
            first = last = int(base)
            if step is not None:
                last = hi
        for v in (first, last):
            if not lo <= v <= hi:
                raise CronError(cron, f"day of week {v} is out of range {lo}-{hi}")
        span = (
            list(range(first, last + 1)) if first <= last else [*range(first, hi + 1), *range(lo, last + 1)]
        )
        days.update(_dialect_day(_quartz_day(v, frm), to) for v in span[:: int(step or 1)])
    return ",".join([*_runs(days), *dict.fromkeys(special)])


@dataclass(frozen=True, slots=True)
class Cron:
    """A cron in canonical Quartz form (see the module docstring)."""

    seconds: str
    minutes: str
    hours: str
    day_of_month: str
    month: str
    day_of_week: str
    year: str = "*"

    def __str__(self) -> str:
        fields = [self.seconds, self.minutes, self.hours, self.day_of_month, self.month, self.day_of_week]
        return " ".join(fields if self.year in _UNRESTRICTED else [*fields, self.year])

    def render(self, dialect: Dialect) -> str:
        """This cron in ``dialect``; :class:`CronError` if the dialect cannot express it."""
        text = str(self)
        if dialect is Dialect.QUARTZ:
            return text
        if self.year not in _UNRESTRICTED:
            raise CronError(
                text, f"a year restriction cannot be expressed in {dialect.value} (no year field)"
            )
        if dialect is Dialect.EMR:
            return text
        days = _renumber_days(text, self.day_of_week, Dialect.QUARTZ, dialect)
        if dialect is Dialect.ENOS:
            return f"{self.seconds} {self.minutes} {self.hours} {self.day_of_month} {self.month} {days} *"
        if self.seconds not in ("0", "00"):
            raise CronError(text, f"{dialect.value} does not schedule by the second (seconds must be 0)")
        if dialect is Dialect.DATAWORKS:
            if "W" in self.day_of_month or self.day_of_month.startswith("L-"):
                raise CronError(text, "DataWorks has no nearest-weekday (W) or offset-from-last (L-n) days")
            return f"{self.seconds} {self.minutes} {self.hours} {self.day_of_month} {self.month} {days}"
        special = [f for f in (self.day_of_month, self.day_of_week) if re.search(r"[LW#]", f)]
        if special:
            raise CronError(text, "Unix cron has no L, W or # days")
        dom = "*" if self.day_of_month == "?" else self.day_of_month
        dow = "*" if self.day_of_week == "?" else days
        return f"{self.minutes} {self.hours} {dom} {self.month} {dow}"


#: Each field but the day of week (checked as it is renumbered): its name and its range.
_RANGES = (
    ("seconds", 0, 59),
    ("minutes", 0, 59),
    ("hours", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
)
_PLAIN = re.compile(r"(?P<base>\*|\d+(?:-\d+)?)(?:/(?P<step>\d+))?")
#: Quartz's own day-of-month forms: the last day, the last weekday, n days before the last, the
#: weekday nearest day n.
_LAST_OR_NEAREST = re.compile(r"L|LW|L-(?P<before>\d+)|(?P<day>\d+)W")


def _check(cron: str, name: str, value: str, lo: int, hi: int) -> None:
    """Every item of field ``name`` is cron syntax within ``lo``-``hi``: a platform would refuse
    the cron, or fire at times nobody wrote, so it is refused here naming the field."""
    if value == "*" or (value == "?" and name == "day of month"):
        return
    for item in value.split(","):
        special = _LAST_OR_NEAREST.fullmatch(item) if name == "day of month" else None
        if special is not None:
            if special["before"] is not None and int(special["before"]) > 30:
                raise CronError(cron, f"day of month {item!r} counts back more than 30 days")
            if special["day"] is not None and not 1 <= int(special["day"]) <= 31:
                raise CronError(cron, f"day of month {special['day']} is out of range 1-31")
            continue
        match = _PLAIN.fullmatch(item)
        if match is None:
            raise CronError(cron, f"{name} item {item!r} is not cron syntax")
        for v in [] if match["base"] == "*" else match["base"].split("-"):
            if not lo <= int(v) <= hi:
                raise CronError(cron, f"{name} {int(v)} is out of range {lo}-{hi}")
        if match["step"] is not None and int(match["step"]) == 0:
            raise CronError(cron, f"{name} item {item!r} steps by 0")


@functools.lru_cache(maxsize=4096)
def parse(cron: str, dialect: Dialect = Dialect.QUARTZ) -> Cron:
    """Read ``cron`` written in ``dialect`` into canonical form, each field's items checked.

    Remembered (a :class:`Cron` is frozen): every inventory record's cron is checked as it is
    read and again as it is rendered, and an inventory repeats a few hundred crons at most.
    """
    fields = cron.split()
    width = {
        Dialect.QUARTZ: (6, 7),
        Dialect.EMR: (6,),
        Dialect.DATAWORKS: (6,),
        Dialect.ENOS: (6, 7),
        Dialect.UNIX: (5,),
    }
    if len(fields) not in width[dialect]:
        wanted = " or ".join(str(n) for n in width[dialect])
        raise CronError(cron, f"has {len(fields)} fields; {dialect.value} crons have {wanted}")
    if dialect is Dialect.UNIX:
        minutes, hours, dom, month, dow = fields
        dom_set, dow_set = dom not in _UNRESTRICTED, dow not in _UNRESTRICTED
        if dom_set and dow_set:
            raise CronError(
                cron,
                "restricts both the day of month and the day of week, which Unix cron fires on "
                "either of; Quartz fires only on days matching both, so it cannot be translated",
            )
        dow = _renumber_days(
            cron, _names(dow, dict(zip(_DAYS, range(7), strict=True))), dialect, Dialect.QUARTZ
        )
        fields = [
            "0",
            minutes,
            hours,
            dom if dom_set else ("?" if dow_set else "*"),
            month,
            dow if dow_set else "?",
        ]
    else:
        numbering = dict(zip(_DAYS, range(7) if dialect is Dialect.DATAWORKS else range(1, 8), strict=True))
        fields[5] = _renumber_days(cron, _names(fields[5], numbering), dialect, Dialect.QUARTZ)
    fields[4] = _names(fields[4], _MONTHS)
    if fields[3] not in _UNRESTRICTED and fields[5] not in _UNRESTRICTED:
        raise CronError(cron, "restricts both the day of month and the day of week (Quartz needs ? in one)")
    if fields[3] == "?" and fields[5] == "?":
        raise CronError(cron, "leaves both day fields unspecified (?)")
    for (name, lo, hi), value in zip(_RANGES, fields[:5], strict=True):
        _check(cron, name, value, lo, hi)
    year = fields[6] if len(fields) == 7 else "*"
    _check(cron, "year", year, 1970, 2099)
    seconds, minutes, hours, dom, month, dow = fields[:6]
    return Cron(seconds, minutes, hours, dom, month, dow, year)


def translate(cron: str, frm: Dialect, to: Dialect) -> str:
    """``cron`` from dialect ``frm`` to dialect ``to``, or :class:`CronError` saying why not."""
    return parse(cron, frm).render(to)
