"""Date macros: golden translations, and their values around month and year ends.

Each case is translated and then both texts are evaluated, each in its own syntax, for runs
scheduled across month, year and leap-day boundaries: the values must agree, and the text around
the macros must survive untouched.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from migrator.translate.macros import Syntax, translate, values

BOUNDARIES = [
    datetime(2026, 3, 1, 0, 30),  # the day before is the end of February
    datetime(2027, 1, 1, 0, 0, 5),  # the day before is in the previous year
    datetime(2024, 3, 1, 1, 15),  # the day before is a leap day
    datetime(2026, 12, 31, 23, 59),
    datetime(2026, 5, 31, 12, 0),  # a month back there is no 31st
    datetime(2026, 1, 1, 0, 10),  # an hour back is last year
]

SQL = (
    "insert overwrite table dws partition (dt='${yyyyMMdd-1d}', hh='${HH-1h}') "
    "select * from ods where ds between '${yyyy-MM-dd-7d}' and '${yyyy-MM-dd}' and user = '${db_user}'"
)


@pytest.mark.parametrize(
    ("text", "frm", "to", "expected"),
    [
        ("dt='${yyyy-MM-dd}'", Syntax.EMR, Syntax.DATAWORKS, "dt='$[yyyy-mm-dd]'"),
        ("${yyyyMMdd-1d}", Syntax.EMR, Syntax.DATAWORKS, "$[yyyymmdd-1]"),
        ("${yyyyMMddHH-1h}", Syntax.EMR, Syntax.DATAWORKS, "$[yyyymmddhh24-1/24]"),
        ("${yyyyMM-1m}", Syntax.EMR, Syntax.DATAWORKS, "$[add_months(yyyymm,-1)]"),
        ("${yyyyMMdd-1m}", Syntax.EMR, Syntax.DATAWORKS, "$[add_months(yyyymmdd,-1)]"),
        ("${yyyy-1y}", Syntax.EMR, Syntax.DATAWORKS, "$[add_months(yyyy,-12)]"),
        ("${yyyy-MM-dd HH:mm:ss+3h}", Syntax.EMR, Syntax.DATAWORKS, "$[yyyy-mm-dd hh24:mi:ss+3/24]"),
        (
            SQL,
            Syntax.EMR,
            Syntax.DATAWORKS,
            "insert overwrite table dws partition (dt='$[yyyymmdd-1]', hh='$[hh24-1/24]') "
            "select * from ods where ds between '$[yyyy-mm-dd-7]' and '$[yyyy-mm-dd]' "
            "and user = '${db_user}'",
        ),
        # DataWorks' ${...} is the business date (T-1): to EMR it is one day more back
        ("${bizdate}", Syntax.DATAWORKS, Syntax.EMR, "${yyyyMMdd-1d}"),
        (
            "p=${yyyymmdd} q=${yyyy-mm-dd-1}",
            Syntax.DATAWORKS,
            Syntax.EMR,
            "p=${yyyyMMdd-1d} q=${yyyy-MM-dd-2d}",
        ),
        (
            "$[yyyymmdd-1] $[hh24mi]",
            Syntax.DATAWORKS,
            Syntax.EMR,
            "${yyyyMMdd-1d} ${HHmm}",
        ),
        ("$[add_months(yyyymmdd,-1)]", Syntax.DATAWORKS, Syntax.EMR, "${yyyyMMdd-1m}"),
        # EnOS: ncal_dt is the trigger date, cal_dt the business date, cal_dt-n n days before it
        ("${yyyy-MM-dd}", Syntax.EMR, Syntax.ENOS, "${ncal_dt}"),
        ("${yyyyMMdd-1d}/${yyyyMMdd-3d}", Syntax.EMR, Syntax.ENOS, "${cal_dt8}/${cal_dt8-2}"),
        ("${cal_dt-2} ${ncal_dt8}", Syntax.ENOS, Syntax.DATAWORKS, "$[yyyy-mm-dd-3] $[yyyymmdd]"),
        ("${cal_dt}", Syntax.ENOS, Syntax.EMR, "${yyyy-MM-dd-1d}"),
    ],
)
def test_translation_golden_and_equal_values_around_boundaries(
    text: str, frm: Syntax, to: Syntax, expected: str
) -> None:
    out, _ = translate(text, frm, to)
    assert out == expected
    for scheduled in BOUNDARIES:
        assert values(out, to, scheduled) == values(text, frm, scheduled), scheduled


def test_values_at_the_boundaries_are_the_documented_ones() -> None:
    """The evaluator itself, against hand-computed values (business date = scheduled date - 1)."""
    at = datetime(2026, 3, 1, 0, 30)
    assert values("${yyyyMMdd-1d}", Syntax.EMR, at) == "20260228"
    assert values("${bizdate}", Syntax.DATAWORKS, at) == "20260228"
    assert values("${yyyymm}", Syntax.DATAWORKS, datetime(2027, 1, 1)) == "202612"
    assert values("$[hh24-1/24]", Syntax.DATAWORKS, datetime(2026, 1, 1, 0, 10)) == "23"
    assert values("${yyyyMMdd-1m}", Syntax.EMR, datetime(2026, 5, 31)) == "20260430"
    assert values("${cal_dt8-1}", Syntax.ENOS, datetime(2024, 3, 1)) == "20240228"
    assert values("${ncal_dt}", Syntax.ENOS, datetime(2024, 3, 1)) == "2024-03-01"


@pytest.mark.parametrize(
    ("text", "to", "reason"),
    [
        ("${yyyyMMddHH-1h}", Syntax.ENOS, "EnOS date variables format yyyy-MM-dd or yyyyMMdd only"),
        ("${yyyy-MM-dd+1d}", Syntax.ENOS, "cannot reach past the trigger date"),
        ("${yyyyMM-1m}", Syntax.ENOS, "EnOS date variables format"),
    ],
)
def test_what_a_target_cannot_express_is_kept_as_written_with_a_warning(
    text: str, to: Syntax, reason: str
) -> None:
    out, warnings = translate(f"a {text} b", Syntax.EMR, to)
    assert out == f"a {text} b"
    assert len(warnings) == 1
    assert text in warnings[0]
    assert reason in warnings[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("${yyyymm-1}", "two offsets"),  # the business month: a day back, then a month
        ("$[hh24mi-30/24/60]", "not minutes"),
    ],
)
def test_dataworks_macros_emr_cannot_write_are_kept_with_a_warning(text: str, reason: str) -> None:
    out, warnings = translate(text, Syntax.DATAWORKS, Syntax.EMR)
    assert out == text
    assert reason in warnings[0]


def test_parameter_references_and_plain_text_are_left_alone() -> None:
    text = "echo ${db_user} ${bizdate} $HOME ${} ${yyyy"
    for frm in Syntax:
        for to in Syntax:
            if frm is not to and frm is not Syntax.DATAWORKS:
                assert translate(text, frm, to) == (text, [])
