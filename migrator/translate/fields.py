"""Reading loosely typed document fields, for every provider reader.

Provider documents carry numbers as strings (``"3381"``) and JSON documents as strings inside JSON
(EMR ``ParamConf``, EnOS ``runMode``). These helpers decode them and raise :class:`FieldError`
with a reason that never quotes the value (it may be a secret); :class:`Fields`, which each
reader subclasses, turns that into a :class:`DocumentError` naming the flow and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Self


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


class DocumentError(ValueError):
    """A provider document that cannot be read as a workflow: names the flow and the field, never
    its value. Each reader raises its own subclass, so a caller catches only its provider's."""

    def __init__(self, flow: str, field: str, reason: str) -> None:
        super().__init__(f"flow {flow}: {field}: {reason}")
        self.flow = flow
        self.field = field
        self.reason = reason


class Fields:
    """One object of a provider document, read field by field; every failure is an
    :attr:`error` naming the flow, where the object sits (``where``) and the field.

    Absent fields read as None; a reader whose documents mean something else by absence (EnOS:
    an empty string, a zero) says so in its subclass, and spells names its own way in :meth:`raw`.
    """

    error: ClassVar[type[DocumentError]] = DocumentError

    def __init__(self, doc: Mapping[str, Any], flow: str, where: str = "") -> None:
        self.doc, self.flow, self.where = doc, flow, where

    def within(self, doc: Mapping[str, Any], where: str) -> Self:
        """A nested object, ``where`` (ending in ``.``) below this one."""
        return type(self)(doc, self.flow, f"{self.where}{where}")

    def fail(self, name: str, reason: str) -> DocumentError:
        return self.error(self.flow, f"{self.where}{name}", reason)

    def raw(self, name: str) -> Any:
        return self.doc.get(name)

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        raise self.fail(name, "must be a string")

    def number(self, name: str) -> float | None:
        """A number, or a string holding one (``"3381"``); None when absent or empty."""
        try:
            return number(self.raw(name))
        except FieldError as exc:
            raise self.fail(name, str(exc)) from None

    def integer(self, name: str) -> int | None:
        value = self.number(name)
        try:
            return None if value is None else whole(value)
        except FieldError as exc:
            raise self.fail(name, str(exc)) from None

    def json(self, name: str) -> Any:
        """A JSON document carried as a string (EMR ``ParamConf``, EnOS ``runMode``); None when
        absent or empty."""
        try:
            return embedded_json(self.raw(name))
        except FieldError as exc:
            raise self.fail(name, str(exc)) from None
