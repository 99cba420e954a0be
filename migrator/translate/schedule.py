"""Schedule rules shared by every target: the cron dialects each one accepts."""

from __future__ import annotations

from migrator.errors import TranslationError
from migrator.model import Workflow


def quartz6(wf: Workflow) -> str:
    """The workflow's cron as 6-field Quartz (both Alibaba products' form).

    A 7th (year) field is dropped when it restricts nothing; a real year restriction cannot be
    expressed, and the item becomes invalid saying so.
    """
    assert wf.schedule is not None
    fields = wf.schedule.cron.split()
    if len(fields) == 7 and fields[6] in {"*", "?"}:
        fields = fields[:6]
    if len(fields) != 6:
        raise TranslationError(
            f"workflow {wf.name!r}: schedule.cron {wf.schedule.cron!r} is not a 6-field Quartz expression "
            "(a year restriction cannot be expressed)"
        )
    return " ".join(fields)
