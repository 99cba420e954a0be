"""Cron dialects: a translation, wherever one is produced, fires at exactly the source's instants.

The property tests generate valid crons of each dialect and compare the next 200 fire times of
the source and of its translation, both evaluated by croniter (an independent evaluator). croniter
speaks Unix numbering (0 = Sunday, 7 too) with seconds first on request; the two small converters
below only adapt Quartz's numbering (1 = Sunday) and ``?`` to it, field by field.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.errors import TranslationError
from migrator.translate.cron import CronError, Dialect, parse, translate

START = datetime(2026, 1, 1)
FIRES = 200


def fires(expr: str, *, seconds: bool) -> list[datetime]:
    it = croniter(expr, START, second_at_beginning=seconds)
    return [it.get_next(datetime) for _ in range(FIRES)]


def quartz_for_croniter(cron: str) -> str:
    """Quartz days of the week (1 = Sunday) as croniter's (0 = Sunday); ``?`` as ``*``."""
    fields = ["*" if f == "?" else f for f in cron.split()]

    def day(item: str) -> str:
        base, slash, step = item.partition("/")
        base = re.sub(r"(?<!#)\d+", lambda m: str(int(m[0]) - 1), base)
        first, dash, last = base.partition("-")
        if dash and first == last:  # croniter reads "0-0" as every day
            base = first
        return base + slash + step

    fields[5] = ",".join(day(item) for item in fields[5].split(","))
    return " ".join(fields[:6])


def dataworks_for_croniter(cron: str) -> str:
    return " ".join("*" if f == "?" else f for f in cron.split())


def evaluate(cron: str, dialect: Dialect) -> list[datetime]:
    if dialect is Dialect.UNIX:
        return fires(cron, seconds=False)
    if dialect is Dialect.DATAWORKS:
        return fires(dataworks_for_croniter(cron), seconds=True)
    return fires(quartz_for_croniter(cron), seconds=True)


# --- generated crons -------------------------------------------------------------------------


def _field(lo: int, hi: int) -> st.SearchStrategy[str]:
    value = st.integers(lo, hi)
    ranged = st.tuples(value, value).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}")
    stepped = st.tuples(st.sampled_from(["*", str(lo)]), st.integers(2, max(2, (hi - lo) // 2))).map(
        lambda bs: f"{bs[0]}/{bs[1]}"
    )
    listed = st.lists(value, min_size=2, max_size=4, unique=True).map(
        lambda vs: ",".join(map(str, sorted(vs)))
    )
    return st.one_of(st.just("*"), value.map(str), ranged, stepped, listed)


_DOW_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@st.composite
def quartz_crons(draw: st.DrawFn) -> str:
    minutes = draw(_field(0, 59))
    hours = draw(_field(0, 23))
    month = draw(st.one_of(st.just("*"), _field(1, 12)))
    mode = draw(st.sampled_from(["dom", "dow", "every"]))
    if mode == "dom":
        dom = draw(st.one_of(_field(1, 28), st.just("L"), st.integers(1, 28).map(lambda d: f"{d}W")))
        dow = "?"
    elif mode == "dow":
        dom = "?"
        day = st.integers(1, 7)
        dow = draw(
            st.one_of(
                day.map(str),
                st.tuples(day, day).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}"),
                st.lists(day, min_size=2, max_size=4, unique=True).map(lambda vs: ",".join(map(str, vs))),
                st.tuples(day, st.integers(1, 4)).map(lambda dk: f"{dk[0]}#{dk[1]}"),
                st.tuples(st.sampled_from(["*", "1", "2"]), st.integers(2, 3)).map(
                    lambda bs: f"{bs[0]}/{bs[1]}"
                ),
                st.tuples(day, day)
                .map(sorted)
                .map(lambda ab: f"{_DOW_NAMES[ab[0] - 1]}-{_DOW_NAMES[ab[1] - 1]}"),
            )
        )
    else:
        dom, dow = "*", "?"
    return f"0 {minutes} {hours} {dom} {month} {dow}"


@st.composite
def unix_crons(draw: st.DrawFn) -> str:
    minutes = draw(_field(0, 59))
    hours = draw(_field(0, 23))
    month = draw(st.one_of(st.just("*"), _field(1, 12)))
    if draw(st.booleans()):
        return f"{minutes} {hours} {draw(_field(1, 28))} {month} *"
    day = st.integers(0, 7)
    dow = draw(
        st.one_of(
            st.just("*"),
            day.map(str),
            # croniter reads "0-0" as every day: ranges of one day are generated as plain values
            st.tuples(day, day).filter(lambda ab: ab[0] < ab[1]).map(lambda ab: f"{ab[0]}-{ab[1]}"),
            st.lists(day, min_size=2, max_size=4, unique=True).map(lambda vs: ",".join(map(str, vs))),
            st.tuples(st.integers(0, 6), st.integers(1, 5)).map(
                lambda dk: f"{dk[0]}#{dk[1] if dk[1] < 5 else 1}"
            ),
        )
    )
    if "#" in dow:  # not Unix syntax: croniter's extension; keep the generated crons plain Unix
        dow = dow.split("#")[0]
    return f"{minutes} {hours} * {month} {dow}"


PAIRS = [(Dialect.QUARTZ, Dialect.DATAWORKS), (Dialect.QUARTZ, Dialect.ENOS), (Dialect.QUARTZ, Dialect.UNIX)]


@pytest.mark.parametrize(("frm", "to"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
@settings(max_examples=120, deadline=None)
@given(cron=quartz_crons())
def test_quartz_translations_fire_at_the_same_instants(cron: str, frm: Dialect, to: Dialect) -> None:
    try:
        out = translate(cron, frm, to)
    except CronError as exc:  # never silent: the item becomes invalid with this reason
        refused: TranslationError = exc
        assert refused.reason
        return
    assert evaluate(out, to) == evaluate(cron, frm), (cron, out)


@settings(max_examples=150, deadline=None)
@given(cron=unix_crons())
def test_unix_crons_read_as_quartz_fire_at_the_same_instants(cron: str) -> None:
    quartz = translate(cron, Dialect.UNIX, Dialect.QUARTZ)
    assert evaluate(quartz, Dialect.QUARTZ) == evaluate(cron, Dialect.UNIX), (cron, quartz)
    # and on to DataWorks, whose numbering differs from both
    dataworks = translate(quartz, Dialect.QUARTZ, Dialect.DATAWORKS)
    assert evaluate(dataworks, Dialect.DATAWORKS) == evaluate(cron, Dialect.UNIX), (cron, dataworks)


def test_the_evaluators_agree_with_known_calendars() -> None:
    """The test's own converters, checked against dates read off a calendar (2026-01-01 is a Thursday)."""
    monday_quartz = evaluate("0 0 9 ? * 2", Dialect.QUARTZ)[0]
    monday_dataworks = evaluate("0 0 9 ? * 1", Dialect.DATAWORKS)[0]
    assert monday_quartz == monday_dataworks == datetime(2026, 1, 5, 9, 0)
    assert evaluate("0 0 9 ? * 1", Dialect.QUARTZ)[0] == datetime(2026, 1, 4, 9, 0)  # Sunday
    assert evaluate("0 0 9 ? * 7", Dialect.DATAWORKS)[0] == datetime(2026, 1, 4, 9, 0)  # Sunday
    assert evaluate("0 9 * * 0", Dialect.UNIX)[0] == datetime(2026, 1, 4, 9, 0)  # Sunday
    assert evaluate("0 0 10 ? * 6#3", Dialect.QUARTZ)[0] == datetime(2026, 1, 16, 10, 0)  # 3rd Friday


# --- golden cases: the traps ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quartz", "dataworks"),
    [
        ("0 0 9 ? * 2", "0 0 9 ? * 1"),  # Monday: Quartz 2, DataWorks 1
        ("0 0 9 ? * 1", "0 0 9 ? * 7"),  # Sunday
        ("0 0 9 ? * MON-FRI", "0 0 9 ? * 1-5"),
        ("0 0 9 ? * 1-3", "0 0 9 ? * 1,2,7"),  # a range that wraps once renumbered is spelled out
        ("0 0 9 ? * 7-2", "0 0 9 ? * 1,6,7"),  # a wrapped range
        ("0 0 9 ? * */2", "0 0 9 ? * 2,4,6,7"),  # Sunday, Tuesday, Thursday, Saturday
        ("0 0 9 ? * 6L", "0 0 9 ? * 5L"),  # the last Friday
        ("0 0 9 ? * 2#1", "0 0 9 ? * 1#1"),  # the first Monday
        ("0 0 9 ? * L", "0 0 9 ? * 6"),  # Quartz's L alone is Saturday
        ("0 0 9 L * ?", "0 0 9 L * ?"),
        ("0 30 2 ? JAN-MAR 4", "0 30 2 ? 1-3 3"),
        ("0 0 9 ? * 2 *", "0 0 9 ? * 1"),  # MigrationX leaves 7-field crons unrotated; not here
    ],
)
def test_dataworks_numbering_golden(quartz: str, dataworks: str) -> None:
    assert translate(quartz, Dialect.QUARTZ, Dialect.DATAWORKS) == dataworks
    assert parse(dataworks, Dialect.DATAWORKS) == parse(quartz)


@pytest.mark.parametrize(
    ("cron", "frm", "to", "reason"),
    [
        ("0 0 9 ? * 2 2027", Dialect.QUARTZ, Dialect.DATAWORKS, "a year restriction cannot be expressed"),
        ("0 0 9 ? * 2 2027", Dialect.QUARTZ, Dialect.EMR, "a year restriction cannot be expressed"),
        ("30 0 9 * * ?", Dialect.QUARTZ, Dialect.DATAWORKS, "does not schedule by the second"),
        ("0 0 9 15W * ?", Dialect.QUARTZ, Dialect.DATAWORKS, "no nearest-weekday (W)"),
        ("0 0 9 ? * 6L", Dialect.QUARTZ, Dialect.UNIX, "Unix cron has no L, W or # days"),
        ("0 9 1 * 1", Dialect.UNIX, Dialect.QUARTZ, "fires on either of"),
        (
            "0 0 9 1 * 2",
            Dialect.QUARTZ,
            Dialect.DATAWORKS,
            "restricts both the day of month and the day of week",
        ),
        ("0 0 9 * *", Dialect.QUARTZ, Dialect.DATAWORKS, "has 5 fields; quartz crons have 6 or 7"),
        ("0 0 9 ? * 2-3L", Dialect.QUARTZ, Dialect.DATAWORKS, "mixes a range or step with L"),
    ],
)
def test_what_a_dialect_cannot_express_is_an_error_naming_why(
    cron: str, frm: Dialect, to: Dialect, reason: str
) -> None:
    with pytest.raises(CronError) as caught:
        translate(cron, frm, to)
    assert reason in caught.value.reason


def test_an_inventory_unix_cron_is_held_as_the_quartz_cron_of_the_same_instants() -> None:
    from migrator.model import Workflow

    record = {"name": "w", "tasks": [{"name": "t"}], "schedule": {"cron": "30 2 * * 1-5"}}
    held = Workflow.model_validate(record)
    assert held.schedule is not None
    assert held.schedule.cron == "0 30 2 ? * 2-6"
    assert evaluate(held.schedule.cron, Dialect.QUARTZ) == evaluate("30 2 * * 1-5", Dialect.UNIX)
    with pytest.raises(ValueError, match="Unix cron fires on either of"):
        Workflow.model_validate({**record, "schedule": {"cron": "30 2 1 * 1"}})


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 61 25 * * ?", "minutes 61 is out of range 0-59"),
        ("0 0 24 * * ?", "hours 24 is out of range 0-23"),
        ("60 0 9 * * ?", "seconds 60 is out of range 0-59"),
        ("0 foo bar * * ?", "minutes item 'foo' is not cron syntax"),
        ("0 0 0 32 * ?", "day of month 32 is out of range 1-31"),
        ("0 0 0 1 13 ?", "month 13 is out of range 1-12"),
        ("0 0 9 32W * ?", "day of month 32 is out of range 1-31"),
        ("0 0 9 L-31 * ?", "day of month 'L-31' counts back more than 30 days"),
        ("0 0 9 ? * MON#6", "day of week: a month has no week 6"),
        ("0 0 9 ? * 8L", "day of week 8 is out of range 1-7"),
        ("0 */0 9 * * ?", "minutes item '*/0' steps by 0"),
        ("? 0 9 * * ?", "seconds item '?' is not cron syntax"),
        ("0 0 9 * * ? 1969", "year 1969 is out of range 1970-2099"),
    ],
)
def test_a_field_out_of_its_range_is_refused_naming_the_field(cron: str, reason: str) -> None:
    """Each of these was taken as written and submitted: the target refuses it, or fires at
    times nobody wrote."""
    with pytest.raises(CronError) as caught:
        parse(cron)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "cron",
    ["0 0 9 L * ?", "0 0 9 LW * ?", "0 0 9 L-3 * ?", "0 0 9 15W * ?", "0 0/15 22-2 * * ?",
     "0 0 9 ? JAN-MAR 2#3", "0 0 9 * * ? 2030", "0 0 9 ? * 6L"],
)  # fmt: skip
def test_quartz_forms_in_range_are_read(cron: str) -> None:
    assert parse(cron).render(Dialect.QUARTZ)


def test_an_inventory_record_with_a_cron_out_of_range_is_invalid_naming_the_field(tmp_path: Path) -> None:
    from migrator.inventory import read

    path = tmp_path / "inv.jsonl"
    good = {"name": "ok", "tasks": [{"name": "t"}], "schedule": {"cron": "0 40 5 3 * ?"}}
    bad = {**good, "name": "bad", "schedule": {"cron": "0 61 25 * * ?"}}
    path.write_text(f"{json.dumps(good)}\n{json.dumps(bad)}\n")
    ok, refused = read([path])
    assert ok.workflow is not None
    assert refused.error == f"{path}:2: workflow 'bad': schedule.cron: minutes 61 is out of range 0-59"
