"""Error tables: a provider's (HTTP status, code) -> :class:`~migrator.errors.Action`, as data.

Each provider declares its table once, next to its client (Airbyte's ``DEFAULT_ERROR_MAPPING``
is the model), so what happens on ``Throttling.User`` or EnOS ``62105`` is read in one place
instead of being spread over ``if`` statements. Rules are tried in order; the first whose status
and code both match wins. A code ending in ``*`` matches by prefix (``Throttling*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from migrator.errors import Action


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    code: str | None = None
    """The provider's code; ``None`` matches any, a trailing ``*`` matches a prefix."""
    status: range | None = None
    """HTTP statuses this rule applies to; ``None`` matches any (and transport errors, which have none)."""

    def matches(self, code: str, status: int | None) -> bool:
        if self.status is not None and (status is None or status not in self.status):
            return False
        if self.code is None:
            return True
        if self.code.endswith("*"):
            return code.startswith(self.code[:-1])
        return code == self.code


SERVER = range(500, 600)
CLIENT = range(400, 500)


@dataclass(frozen=True, slots=True)
class Triage:
    """An ordered error table with a fallback: unknown 5xx retry, any other unknown code fails.

    Transport failures never reach a table: they are ``retry`` where they happen.
    """

    rules: Sequence[Rule]

    def rule(self, code: str, status: int | None) -> Rule:
        for rule in self.rules:
            if rule.matches(code, status):
                return rule
        return _FALLBACK_SERVER if status is not None and status >= 500 else _FALLBACK_CLIENT

    def action(self, code: str, status: int | None) -> Action:
        return self.rule(code, status).action


_FALLBACK_SERVER = Rule(Action.RETRY)
_FALLBACK_CLIENT = Rule(Action.FAIL)
