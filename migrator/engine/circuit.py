"""The circuit of one provider account: once it is open, no call is sent for the rest of the run.

It opens when the provider cannot work for this account (a bad access key, a locked account, a
missing permission: the error table says ``stop``), when a quota is used up until a reset time
(``park``), when a signature is refused while the account has never answered (the secret is
wrong) or several times in a row, when the retry budget is spent, or when several calls in a row
went unanswered after all their retries. Opening is final for the run: a stop that was right is
better than a thousand failed items that did not fail on their own.

Until the account has answered once (``proven``), the flow sends one call at a time, so that
wrong credentials cost one call, not one per concurrent worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import structlog

from migrator.errors import ProviderError, ProviderStopped

log = structlog.get_logger(__name__)

#: Signature refusals in a row that stop a provider which has answered before.
SUSPECTS = 3
#: Calls in a row that went unanswered after every retry before the provider counts as down.
UNANSWERED = 5


@dataclass(slots=True)
class Circuit:
    provider: str
    proven: bool = False
    stopped: ProviderStopped | None = None
    opened: anyio.Event = field(default_factory=anyio.Event)
    suspects: int = 0
    unanswered: int = 0

    def check(self) -> None:
        if self.stopped is not None:
            raise self.stopped

    def open(self, reason: str, until: float | None = None) -> ProviderStopped:
        """Open (first reason wins) and return the error every caller now gets."""
        if self.stopped is None:
            self.stopped = ProviderStopped(self.provider, reason, until)
            self.opened.set()
            log.error("provider stopped", provider=self.provider, reason=reason, until=until)
        return self.stopped

    def answered(self) -> None:
        """The account works: it gave an answer that was not a refusal of the caller."""
        self.proven = True
        self.suspects = 0
        self.unanswered = 0

    def suspect(self, exc: ProviderError) -> ProviderStopped | None:
        """A refused signature: wrong credentials if the account never worked, or if it repeats."""
        self.suspects += 1
        if not self.proven:
            return self.open(f"{exc.code} on the first call: check the credentials ({exc.message})")
        if self.suspects >= SUSPECTS:
            return self.open(f"{exc.code} {self.suspects} times in a row ({exc.message})")
        return None

    def gave_up(self, exc: ProviderError) -> None:
        """A call was left unanswered after its retries; several in a row mean the provider is down."""
        self.unanswered += 1
        if self.unanswered >= UNANSWERED:
            self.open(f"{self.unanswered} calls in a row unanswered after retries; last: {exc}")
