"""The one error tree. Provider errors carry the provider's code and request id for the report."""

from __future__ import annotations


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
    (``Transport``, ``Timeout``); ``retryable`` is decided by the provider's error table.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after
