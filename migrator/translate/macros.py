"""Date macros in job content and parameters, from one platform's syntax to another's.

Each platform writes "the run's date, formatted, offset" differently, and from a different base:

* **EMR** ``${yyyyMMdd-1d}``: Java format letters (``yyyy yy MM dd HH hh mm ss``) and one offset in
  years, months (``m``), days or hours, from the flow instance's **scheduled time**.
* **DataWorks** ``$[yyyymmdd-1]``: from the **scheduled time**, letters ``yyyy yy mm dd hh24 hh mi
  ss``, offsets in days (``-1``), hours (``-1/24``) or minutes (``-1/24/60``), months through
  ``$[add_months(yyyymmdd,-1)]``. ``${yyyymmdd-1}`` and ``${bizdate}`` are from the **business
  date**, the scheduled date minus one day (T-1), and format dates only.
* **EnOS** system variables: ``${ncal_dt}``/``${ncal_dt8}`` the trigger date (``yyyy-MM-dd`` and
  ``yyyyMMdd``), ``${cal_dt}``/``${cal_dt8}`` the business date (T-1) and ``${cal_dt-n}``/
  ``${cal_dt8-n}`` n days before it.

Every macro is read into one :class:`DateMacro` relative to the scheduled time (a business-date
macro becomes "minus one day"), and written in the target's syntax. Month moves clamp to the end
of a shorter month (Java's ``Calendar.add``, which EMR uses); that DataWorks' ``add_months`` does
the same is assumed, not verified. Text around macros, and
``${name}`` references to parameters, are kept as they are; a macro the target cannot express is
kept as written and reported, never dropped or approximated.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from migrator.model import Workflow


class Syntax(StrEnum):
    EMR = "emr"
    DATAWORKS = "dataworks"
    ENOS = "enos"


class Unit(StrEnum):
    YEAR = "year"
    MONTH = "month"
    DAY = "day"
    HOUR = "hour"
    MINUTE = "minute"


#: Neutral format tokens; anything else in a format is literal text.
TOKENS = ("yyyy", "yy", "MM", "dd", "HH", "hh", "mm", "ss")


def _offsets(*moves: tuple[int, Unit]) -> tuple[tuple[int, Unit], ...]:
    """Moves in order, zero ones dropped and neighbours of one unit added up."""
    out: list[tuple[int, Unit]] = []
    for move, unit in moves:
        amount = move + (out.pop()[0] if out and out[-1][1] is unit else 0)
        if amount:
            out.append((amount, unit))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DateMacro:
    """A formatted instant: ``format`` (neutral tokens and literals) of the scheduled time moved by
    each ``(amount, unit)`` of ``offsets`` in turn."""

    format: tuple[str, ...]
    offsets: tuple[tuple[int, Unit], ...] = ()

    def value(self, scheduled: datetime) -> str:
        """The macro's value for a run scheduled at ``scheduled`` (the golden tests' evaluator)."""
        at = scheduled
        for amount, unit in self.offsets:
            at = _moved(at, amount, unit)
        out = {"yyyy": f"{at.year:04d}", "yy": f"{at.year % 100:02d}", "MM": f"{at.month:02d}",
               "dd": f"{at.day:02d}", "HH": f"{at.hour:02d}", "hh": f"{(at.hour % 12) or 12:02d}",
               "mm": f"{at.minute:02d}", "ss": f"{at.second:02d}"}  # fmt: skip
        return "".join(out.get(part, part) for part in self.format)


def _moved(at: datetime, amount: int, unit: Unit) -> datetime:
    if unit in (Unit.YEAR, Unit.MONTH):
        months = at.month - 1 + amount * (12 if unit is Unit.YEAR else 1)
        year, month = at.year + months // 12, months % 12 + 1
        return at.replace(year=year, month=month, day=min(at.day, calendar.monthrange(year, month)[1]))
    step = {Unit.DAY: timedelta(days=1), Unit.HOUR: timedelta(hours=1), Unit.MINUTE: timedelta(minutes=1)}
    return at + amount * step[unit]


class Untranslatable(Exception):
    """A macro the target syntax has no way to write; ``reason`` says what is missing."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- per-syntax format letters ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Letters:
    """One syntax's format letters: neutral token -> native letters, and the native letters
    longest first (``hh24`` before ``hh``), as :func:`_tokens` must try them."""

    native: dict[str, str]
    longest_first: tuple[tuple[str, str], ...]
    split: dict[str, tuple[str, ...] | None] = field(default_factory=dict, compare=False)

    @classmethod
    def of(cls, native: dict[str, str]) -> _Letters:
        pairs = sorted(((n, neutral) for neutral, n in native.items()), key=lambda p: -len(p[0]))
        return cls(native, tuple(pairs))


#: Formats :func:`_tokens` remembers per syntax: bounded, as a parameter's name is a "format" too.
_FORMATS_KEPT = 4096
_EMR_LETTERS = _Letters.of({t: t for t in TOKENS})
_DATAWORKS_LETTERS = _Letters.of(dict(_EMR_LETTERS.native, MM="mm", HH="hh24", mm="mi"))
#: DataWorks' business-date macros (``${...}``) format dates only.
_DATAWORKS_DATE_LETTERS = _Letters.of(
    {k: v for k, v in _DATAWORKS_LETTERS.native.items() if k in {"yyyy", "yy", "MM", "dd"}}
)


def _tokens(fmt: str, letters: _Letters) -> tuple[str, ...] | None:
    """Split a format into neutral tokens (longest letters first); None if it holds no token.

    Remembered per syntax: an inventory repeats a handful of formats (``bizdate``, ``yyyyMMdd``)
    thousands of times, and splitting them letter by letter was half of a rendering's time.
    """
    if fmt not in letters.split:
        if len(letters.split) >= _FORMATS_KEPT:
            letters.split.clear()
        letters.split[fmt] = _split(fmt, letters)
    return letters.split[fmt]


def _split(fmt: str, letters: _Letters) -> tuple[str, ...] | None:
    out: list[str] = []
    i = 0
    found = False
    while i < len(fmt):
        for native, neutral in letters.longest_first:
            if fmt.startswith(native, i):
                out.append(neutral)
                i += len(native)
                found = True
                break
        else:
            if fmt[i].isalpha():
                return None  # a letter that is no token: a parameter name, not a date format
            out.append(fmt[i])
            i += 1
    return tuple(out) if found else None


def _native(tokens: tuple[str, ...], letters: _Letters) -> str:
    return "".join(letters.native.get(t, t) for t in tokens)


def _signed(m: re.Match[str]) -> int:
    """A match's ``sign`` and ``n`` groups as one number (0 when there is none)."""
    return int(m["n"] or 0) * (-1 if m["sign"] == "-" else 1)


# --- reading ------------------------------------------------------------------------------------

_EMR = re.compile(r"\$\{(?P<fmt>[^{}+]+?)(?:(?P<sign>[+-])(?P<n>\d+)(?P<unit>[ymdh]))?\}")
_EMR_UNITS = {"y": Unit.YEAR, "m": Unit.MONTH, "d": Unit.DAY, "h": Unit.HOUR}
_DW_SCHEDULED = re.compile(
    r"\$\[(?:add_months\((?P<mfmt>[^,\]]+),\s*(?P<months>[+-]?\d+)\)"
    r"|(?P<fmt>[^\]+]+?)(?:(?P<sign>[+-])(?P<n>\d+)(?P<per>/24(?:/60)?)?)?)\]"
)
_DW_BUSINESS = re.compile(r"\$\{(?P<fmt>[^{}+]+?)(?:(?P<sign>[+-])(?P<n>\d+))?\}")
_ENOS = re.compile(r"\$\{(?P<name>n?cal_dt(?:8)?)(?:-(?P<n>\d+))?\}")

Match = tuple[int, int, DateMacro]


def _emr(text: str) -> list[Match]:
    found: list[Match] = []
    for m in _EMR.finditer(text):
        tokens = _tokens(m["fmt"], _EMR_LETTERS)
        if tokens is None:
            continue
        offsets: tuple[tuple[int, Unit], ...] = ()
        if m["n"]:
            offsets = _offsets((_signed(m), _EMR_UNITS[m["unit"]]))
        found.append((m.start(), m.end(), DateMacro(tokens, offsets)))
    return found


def _dataworks(text: str) -> list[Match]:
    found: list[Match] = []
    for m in _DW_SCHEDULED.finditer(text):
        if m["mfmt"] is not None:
            tokens = _tokens(m["mfmt"].strip(), _DATAWORKS_LETTERS)
            offsets: tuple[tuple[int, Unit], ...] = _offsets((int(m["months"]), Unit.MONTH))
        else:
            tokens = _tokens(m["fmt"], _DATAWORKS_LETTERS)
            offsets = ()
            if m["n"]:
                unit = {"/24": Unit.HOUR, "/24/60": Unit.MINUTE}.get(m["per"] or "", Unit.DAY)
                offsets = _offsets((_signed(m), unit))
        if tokens is not None:
            found.append((m.start(), m.end(), DateMacro(tokens, offsets)))
    for m in _DW_BUSINESS.finditer(text):
        fmt = "yyyymmdd" if m["fmt"] == "bizdate" and not m["n"] else m["fmt"]
        tokens = _tokens(fmt, _DATAWORKS_DATE_LETTERS)
        if tokens is None:
            continue
        amount = _signed(m)
        unit = Unit.DAY if "dd" in tokens else Unit.MONTH if "MM" in tokens else Unit.YEAR
        offsets = _offsets((-1, Unit.DAY), (amount, unit))
        found.append((m.start(), m.end(), DateMacro(tokens, offsets)))
    return sorted(found)


def _enos(text: str) -> list[Match]:
    found: list[Match] = []
    for m in _ENOS.finditer(text):
        tokens = ("yyyy", "MM", "dd") if m["name"].endswith("8") else ("yyyy", "-", "MM", "-", "dd")
        days = 0 if m["name"].startswith("n") else -1 - int(m["n"] or 0)
        if m["name"].startswith("n") and m["n"]:
            continue  # ncal_dt takes no offset: not one of ours
        found.append((m.start(), m.end(), DateMacro(tokens, _offsets((days, Unit.DAY)))))
    return found


READERS: dict[Syntax, Callable[[str], list[Match]]] = {
    Syntax.EMR: _emr,
    Syntax.DATAWORKS: _dataworks,
    Syntax.ENOS: _enos,
}


# --- writing ------------------------------------------------------------------------------------


def _single(macro: DateMacro, syntax: Syntax) -> tuple[int, Unit] | None:
    if len(macro.offsets) > 1:
        raise Untranslatable(f"{syntax.value} has no macro with two offsets ({_describe(macro)})")
    return macro.offsets[0] if macro.offsets else None


def _describe(macro: DateMacro) -> str:
    moves = ", ".join(f"{n:+d} {u.value}" for n, u in macro.offsets) or "no offset"
    return f"{''.join(macro.format)}, {moves}"


def write_emr(macro: DateMacro) -> str:
    offset = _single(macro, Syntax.EMR)
    fmt = _native(macro.format, _EMR_LETTERS)
    if offset is None:
        return f"${{{fmt}}}"
    amount, unit = offset
    letter = {Unit.YEAR: "y", Unit.MONTH: "m", Unit.DAY: "d", Unit.HOUR: "h"}.get(unit)
    if letter is None:
        raise Untranslatable("EMR macros move by years, months, days or hours, not minutes")
    return f"${{{fmt}{amount:+d}{letter}}}"


def write_dataworks(macro: DateMacro) -> str:
    """Always from the scheduled time (``$[...]``), which expresses every base exactly."""
    offset = _single(macro, Syntax.DATAWORKS)
    fmt = _native(macro.format, _DATAWORKS_LETTERS)
    if offset is None:
        return f"$[{fmt}]"
    amount, unit = offset
    if unit in (Unit.MONTH, Unit.YEAR):
        return f"$[add_months({fmt},{amount * (12 if unit is Unit.YEAR else 1)})]"
    per = {Unit.DAY: "", Unit.HOUR: "/24", Unit.MINUTE: "/24/60"}[unit]
    return f"$[{fmt}{amount:+d}{per}]"


def write_enos(macro: DateMacro) -> str:
    offset = _single(macro, Syntax.ENOS)
    names = {("yyyy", "-", "MM", "-", "dd"): "cal_dt", ("yyyy", "MM", "dd"): "cal_dt8"}
    name = names.get(macro.format)
    if name is None:
        raise Untranslatable("EnOS date variables format yyyy-MM-dd or yyyyMMdd only")
    days = 0 if offset is None else offset[0]
    if offset is not None and offset[1] is not Unit.DAY:
        raise Untranslatable("EnOS date variables move by days only")
    if days == 0:
        return f"${{n{name}}}"
    if days > 0:
        raise Untranslatable("EnOS date variables cannot reach past the trigger date")
    return f"${{{name}}}" if days == -1 else f"${{{name}-{-days - 1}}}"


WRITERS: dict[Syntax, Callable[[DateMacro], str]] = {
    Syntax.EMR: write_emr,
    Syntax.DATAWORKS: write_dataworks,
    Syntax.ENOS: write_enos,
}


def _rewrite(text: str, syntax: Syntax, write: Callable[[str, DateMacro], str]) -> str:
    """``text`` with each macro of ``syntax`` replaced by ``write(as written, macro)``."""
    out: list[str] = []
    last = 0
    for start, end, macro in READERS[syntax](text):
        if start < last:
            continue  # overlapping reads (a business and a scheduled pattern): the first wins
        out.append(text[last:start])
        out.append(write(text[start:end], macro))
        last = end
    out.append(text[last:])
    return "".join(out)


def translate(text: str, frm: Syntax, to: Syntax) -> tuple[str, list[str]]:
    """``text`` with every date macro of ``frm`` written for ``to``; and a warning per macro kept
    as written because ``to`` cannot express it."""
    if frm is to:
        return text, []
    warnings: list[str] = []

    def write(written: str, macro: DateMacro) -> str:
        try:
            return WRITERS[to](macro)
        except Untranslatable as exc:
            warnings.append(f"macro {written} kept as written: {exc.reason}")
            return written

    return _rewrite(text, frm, write), warnings


def values(text: str, syntax: Syntax, scheduled: datetime) -> str:
    """``text`` with every macro of ``syntax`` replaced by its value for a run at ``scheduled``."""
    return _rewrite(text, syntax, lambda _written, macro: macro.value(scheduled))


#: The macro syntax of each source system (an inventory's own texts are taken as written).
SYNTAX_OF_SYSTEM: dict[str, Syntax] = {"emr": Syntax.EMR, "enos": Syntax.ENOS, "dataworks": Syntax.DATAWORKS}
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def writer(wf: Workflow, to: Syntax, warn: Callable[[str], None]) -> Callable[[str], str]:
    """A function writing the texts of ``wf`` for target syntax ``to``.

    Date macros are translated from the syntax of the workflow's source system (see
    :func:`translate`); a ``${name}`` that is neither a date macro nor one of the workflow's
    parameters and variables is left as written and reported through ``warn``: at the target it
    would resolve to nothing, or to a built-in of the same name.
    """
    frm = SYNTAX_OF_SYSTEM.get(wf.source.system)
    known = wf.parameter_names()

    def write(text: str) -> str:
        if "$" not in text:  # every macro and reference starts with one
            return text
        out, warnings = (text, []) if frm is None else translate(text, frm, to)
        unknown = sorted({m[1] for m in _REFERENCE.finditer(out)} - known - _BUILTINS[to])
        warnings += [
            f"${{{name}}} is neither a date macro nor a parameter: left as written" for name in unknown
        ]
        for warning in warnings:
            warn(warning)
        return out

    return write


#: Names a target resolves itself.
_BUILTINS: dict[Syntax, frozenset[str]] = {
    Syntax.EMR: frozenset(),
    Syntax.DATAWORKS: frozenset({"bizdate", "cyctime", "gmtdate"}),
    Syntax.ENOS: frozenset({"cal_dt", "cal_dt8", "ncal_dt", "ncal_dt8"}),
}
