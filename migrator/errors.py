"""The one error tree. Provider errors carry the provider's code and request id for the report."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What to do about a provider's error answer: the right-hand side of every error table.

    Whether an answer proves the request was *not executed* matters for creates that must never
    be repeated blindly: throttling, re-sign, token refresh, stop and park answers all come from
    the gateway before the action runs, so even a non-idempotent create may be sent again after
    them; a ``retry`` answer (5xx, timeout, reset) leaves it unknown.
    """

    RETRY = "retry"
    """Transient (5xx, timeout, reset): back off and send again; a create may have landed."""
    UNSENT = "unsent"
    """No connection could be made (refused, no route, name not found): back off and send again;
    the request never left this machine, so nothing landed."""
    THROTTLE = "throttle"
    """Refused for rate: lower the account's send rate, back off, send again."""
    RESIGN = "resign"
    """Refused for the signature's freshness (nonce used, timestamp expired): sign and send once more."""
    REFRESH = "refresh"
    """The access token expired: renew it and send again."""
    FAIL = "fail"
    """This request is wrong: the item fails with the provider's code."""
    TAKEN = "taken"
    """The name is another object's at the target: the item is sent once more when the run's
    other submits have settled (another workflow renamed in the same run may be giving it up),
    and fails if it is still taken then."""
    SUSPECT = "suspect"
    """A refused signature: stops the provider if the account never worked or it repeats (a bad
    secret); otherwise this request goes back to be sent by a later run."""
    STOP = "stop"
    """The account cannot work (bad key, locked, no permission): open the circuit, stop the provider."""
    PARK = "park"
    """A quota is used up until a reset time: park the item and stop the provider until then."""

    @property
    def fails_item(self) -> bool:
        """The answer is about this request: the item it was for fails with the provider's code.

        ``fail`` and ``taken``: a refused signature (``suspect``) may be a rotated secret rather
        than this request, so its item goes back to ``pending`` instead of failing.
        """
        return self is Action.FAIL or self is Action.TAKEN

    @property
    def unexecuted(self) -> bool:
        """The answer proves the request did nothing, so sending it again is always safe."""
        return self is not Action.RETRY


NAME_TAKEN = "NameTaken"
"""The code an item fails with when its name stayed another object's (``Action.TAKEN``): a sync
sends it again each night, since the name may have come free without its source changing."""


class MigratorError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(MigratorError):
    """A config or job file is wrong; the message names the file and the field (exit code 2)."""


class TranslationError(MigratorError):
    """A workflow cannot be expressed at the target; the item becomes ``invalid`` with this reason."""


class StoreError(MigratorError):
    """The state database is locked, corrupt or unwritable (exit code 2 or 3, never a traceback)."""


class StoreLockedError(StoreError):
    """Another live process holds the run lock for this job (exit code 3)."""


class ProviderError(MigratorError):
    """A provider answered with an error, or could not be reached.

    ``code`` is the provider's own code (``Throttling.User``, ``62102``) or a transport code
    (``Transport``, ``Timeout``); ``action`` is what the provider's error table
    (:mod:`migrator.providers.triage`) says to do about it; ``retry_after`` is the wait the
    provider asked for, in seconds; ``holder``, with a ``taken`` answer, the id of the object
    that holds the name.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        action: Action = Action.FAIL,
        status: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        holder: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.action = action
        self.status = status
        self.request_id = request_id
        self.retry_after = retry_after
        self.holder = holder


class ProviderStopped(MigratorError):
    """The provider's circuit is open: no call is sent to it for the rest of the run.

    Raised instead of sending, so the item whose call it was is untouched at the target and goes
    back to where it was; ``until`` is set when the stop is a quota that resets at that time.
    """

    def __init__(self, provider: str, reason: str, until: float | None = None) -> None:
        super().__init__(f"provider {provider} stopped: {reason}")
        self.provider = provider
        self.reason = reason
        self.until = until
