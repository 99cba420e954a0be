"""Reading loosely typed document fields, for every provider reader.

Provider documents carry numbers as strings (``"3381"``) and JSON documents as strings inside JSON
(EMR ``ParamConf``, EnOS ``runMode``). These helpers decode them and raise :class:`FieldError`
with a reason that never quotes the value (it may be a secret); each reader adds which document
and field it was.
"""

from __future__ import annotations

import json
from typing import Any


class FieldError(ValueError):
    """Why a field could not be read (the value itself is never part of it)."""


def number(value: Any) -> float | None:
    """A number, or a string holding one; None when absent or empty."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldError("must be a number")
    try:
        return float(value)
    except ValueError:
        raise FieldError("must be a number") from None


def whole(value: float) -> int:
    if not value.is_integer():
        raise FieldError("must be a whole number")
    return int(value)


def embedded_json(value: Any) -> Any:
    """A JSON document carried as a string; None when absent or blank; already decoded passes."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise FieldError(f"is not valid JSON ({exc.msg})") from None
