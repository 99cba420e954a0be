"""Schedule dialects: Quartz 6-field crons as EnOS's 7-field cron plus cycle, and back."""

from __future__ import annotations

import pytest

from migrator.errors import TranslationError
from migrator.translate.schedule import CronError, enos_cron, quartz_from_enos

CASES = [
    # (Quartz, EnOS cycle): repeating minutes or hours decide, else a fixed day field, else a day
    ("0 0 2 * * ?", "D"),  # daily
    ("59 59 23 * * ?", "D"),
    ("0 30 1,13 * * ?", "D"),  # a list of hours is still a day's schedule
    ("0 0 8-18 * * ?", "D"),  # so is a range
    ("0 15 * * * ?", "H"),  # hourly
    ("0 15 0-23/1 * * ?", "H"),  # a full range in steps of 1 is every hour
    ("0 15 */2 * * ?", "H"),  # every other hour
    ("0 15 6-18/3 * * ?", "H"),
    ("0 0 6 ? * 2", "W"),  # weekly: Monday in Quartz numbering (1 = Sunday)
    ("0 0 6 ? * 2-6", "W"),
    ("0 0 6 ? * MON,FRI", "W"),
    ("0 0 6 ? * 6#3", "W"),
    ("0 0 3 1 * ?", "M"),  # monthly
    ("0 0 3 1,15 * ?", "M"),
    ("0 0 3 L * ?", "M"),
    ("0 0 3 1 1,4,7,10 ?", "M"),  # the month field rides along
    ("0 * * * * ?", "mi"),  # every minute
    ("0 0/1 * * * ?", "mi"),
    ("0 */5 * * * ?", "mi"),
    ("0 5/15 9-17 ? * *", "mi"),  # minute steps within a range of hours
    ("0 15 */2 1 * ?", "H"),  # every other hour on the 1st: the finest repeating field wins
    ("0 0 6 1/2 * ?", "D"),  # a day-of-month step is not a fixed day of month
]


@pytest.mark.parametrize(("quartz", "cycle"), CASES)
def test_enos_cron_adds_the_year_and_derives_the_cycle(quartz: str, cycle: str) -> None:
    assert enos_cron(quartz) == (f"{quartz} *", cycle)


@pytest.mark.parametrize(("quartz", "cycle"), CASES)
def test_quartz_from_enos_inverts_it(quartz: str, cycle: str) -> None:
    cron, derived = enos_cron(quartz)
    assert quartz_from_enos(cron, derived) == quartz
    assert quartz_from_enos(quartz, cycle) == quartz  # 6 fields accepted too
    assert quartz_from_enos(f"{quartz} ?", cycle) == quartz


def test_the_day_of_week_field_is_passed_on_unchanged() -> None:
    """Both sides number days the Quartz way (1 = Sunday): no renumbering either way."""
    for dow in ("1", "7", "1-7", "2,4,6", "SUN", "MON-FRI", "6L", "2#1"):
        cron, cycle = enos_cron(f"0 0 6 ? * {dow}")
        assert cron.split()[5] == dow
        assert quartz_from_enos(cron, cycle).split()[5] == dow


@pytest.mark.parametrize(
    ("quartz", "reason"),
    [
        ("*/10 * * * * ?", "the seconds field repeats within a minute"),
        ("* * * * * ?", "the seconds field repeats within a minute"),
        ("0/30 0 1 * * ?", "the seconds field repeats within a minute"),
        ("0 0 1 1 * 2", "both day-of-month and day-of-week are restricted"),
        ("0 0 1 * *", "is not a 6-field Quartz expression"),
        ("0 0 1 * * ? 2025", "is not a 6-field Quartz expression"),
        ("0 0 1 * * ? * *", "is not a 6-field Quartz expression"),
        ("0 0 1 * * ?x", "the day-of-week field is not Quartz syntax"),
        ("0 0 one * * ?", "the hours field is not Quartz syntax"),
    ],
)
def test_crons_no_cycle_fits_raise_naming_the_cron(quartz: str, reason: str) -> None:
    with pytest.raises(CronError) as caught:
        enos_cron(quartz)
    assert isinstance(caught.value, TranslationError)
    assert str(caught.value).startswith(f"cron {quartz!r}: {reason}")
    assert quartz not in caught.value.reason  # the reason alone is safe for document errors


@pytest.mark.parametrize(
    ("cron", "cycle", "reason"),
    [
        ("0 0 2 * * ? *", "H", "cycle does not agree with the cron"),
        ("0 15 * * * ? *", "D", "cycle does not agree with the cron"),
        ("0 0 3 1 * ? *", "W", "cycle does not agree with the cron"),
        ("0 0 2 * * ? *", "d", "cycle is not one of M, W, D, H, mi"),
        ("0 0 2 * * ? *", "", "cycle is not one of M, W, D, H, mi"),
        ("0 0 2 * * ? 2030", "D", "is not a 6-field Quartz expression"),
        ("*/5 * * * * ? *", "mi", "the seconds field repeats within a minute"),
    ],
)
def test_quartz_from_enos_checks_the_cycle(cron: str, cycle: str, reason: str) -> None:
    with pytest.raises(CronError) as caught:
        quartz_from_enos(cron, cycle)
    assert caught.value.reason.startswith(reason)
    assert str(caught.value).startswith(f"cron {cron!r}: ")
