"""The retry budget of one provider account: retries are paid for, successes earn them back.

This is the AWS SDK's retry quota. A client-wide bucket of ``capacity`` tokens; each retry costs
``COST`` (``TIMEOUT_COST`` after a timeout or a dropped connection, which tie up the most); a call
that succeeds first time refunds one token and one that succeeds after retrying refunds what its
last retry cost. While the provider mostly answers, the bucket stays full; when it mostly fails,
the bucket drains within ``capacity / COST`` retries and retrying stops, so a failing provider
gets each call once instead of a storm of them. The flow treats an empty bucket as a provider
that is down (its circuit opens).
"""

from __future__ import annotations

from dataclasses import dataclass, field

COST = 5
TIMEOUT_COST = 10
TIMEOUT_CODES = frozenset({"Timeout", "Transport", "Unreachable"})


def cost_of(code: str) -> int:
    return TIMEOUT_COST if code in TIMEOUT_CODES else COST


@dataclass(slots=True)
class RetryBudget:
    capacity: int = 500
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def take(self, cost: int) -> bool:
        """Pay for one retry; False (and nothing paid) if the budget cannot."""
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def refund(self, amount: int) -> None:
        self.tokens = min(self.capacity, self.tokens + amount)
