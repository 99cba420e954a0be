"""The send rate of one provider account: paced to its quota, lowered by throttling, recovering.

Pacing rather than a bursty bucket: a gateway's quota is counted over short windows (Alibaba's
Sentinel counts two 500 ms buckets), so calls spread evenly at the quota's rate are all admitted
while a burst of the same average rate is partly refused. :class:`Pace` is a token bucket of
capacity one in GCRA form: each call reserves the next free slot, ``1/rate`` after the previous
one, and waits for it; it costs O(1) and no task.

:class:`AdaptiveRate` adjusts the pace with CUBIC, as the AWS SDK's adaptive retry mode does
(C = 0.4, beta = 0.7). A throttling answer cuts the rate to 0.7 x what was being sent and
remembers that as ``w_max``; after that the rate follows ``C(t - K)^3 + w_max``: a fast climb back
towards the rate that was throttled, a plateau near it, then a careful probe above it. We chose
CUBIC over AIMD because the plateau keeps the rate close to a fixed quota for long, where AIMD's
saw-tooth spends half its time well under it.

Four changes from AWS, all because a gateway also throttles for reasons that have nothing to do
with our rate (an API's quota shared with other tenants, risk control), and cutting on each of
those would starve the run (CUBIC under random loss settles at a few calls per second):

- a cut starts from the rate that got through, not the rate that was sent (after an unpaced
  start they differ many times over);
- one cut per congestion episode: only a throttle of a call sent after the last cut, and at
  least :data:`MIN_GAP` after it, cuts again, so one burst of refusals cuts the rate once;
- a configured quota is a ceiling the rate never exceeds, and a floor of :data:`FLOOR` times it
  that the rate never goes below (a quota wrong by more than that throttles so much that the
  retry budget runs out and the run stops, saying why, which is the right outcome);
- without a configured quota the rate is unpaced until the first throttle, as in AWS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

#: CUBIC's scaling constant and multiplicative decrease (the AWS SDK's values).
C = 0.4
BETA = 0.7
#: Never pace slower than one call every two seconds, nor below this share of a configured quota.
MIN_RATE = 0.5
FLOOR = 0.25
#: Seconds between two cuts at least.
MIN_GAP = 0.5
#: The measured send rate: counted over half-second buckets, smoothed (AWS's RateClocker).
BUCKET = 0.5
SMOOTHING = 0.8


@dataclass(slots=True)
class Pace:
    """Even spacing at ``rate`` calls per second; ``None`` sends at once."""

    rate: float | None
    tat: float = 0.0  # the theoretical arrival time of the next call

    def reserve(self, now: float) -> float:
        """Take the next slot; return how long to wait for it."""
        if self.rate is None:
            return 0.0
        start = max(self.tat, now)
        self.tat = start + 1.0 / self.rate
        return start - now


@dataclass(slots=True)
class _Measured:
    rate: float = 0.0
    count: int = 0
    bucket: float = -1.0

    first: float = -1.0
    total: int = 0

    def sent(self, now: float) -> None:
        bucket = math.floor(now / BUCKET) * BUCKET
        if self.bucket < 0:
            self.bucket = bucket
            self.first = now
        self.total += 1
        if bucket > self.bucket:
            current = self.count / (bucket - self.bucket)
            self.rate = current * SMOOTHING + self.rate * (1 - SMOOTHING)
            self.count = 0
            self.bucket = bucket
        self.count += 1

    def estimate(self, now: float) -> float:
        """The smoothed rate, or before the first bucket is over, the average so far (over at
        least one bucket: a few calls in the first milliseconds are not a rate of thousands)."""
        if self.rate > 0:
            return self.rate
        return self.total / max(now - self.first, BUCKET) if self.first >= 0 else 0.0


@dataclass(slots=True)
class AdaptiveRate:
    """One class of calls (reads, writes, or all) of one account.

    ``ceiling`` is the configured rate (already under the quota); ``None`` means no configured
    limit, and then pacing starts only at the first throttle, as in the AWS adaptive mode.
    """

    ceiling: float | None
    clock: Callable[[], float]
    pace: Pace = field(init=False)
    measured: _Measured = field(default_factory=_Measured)
    admitted: _Measured = field(default_factory=_Measured)
    w_max: float = 0.0
    k: float = 0.0
    last_cut: float | None = None

    def __post_init__(self) -> None:
        self.pace = Pace(self.ceiling)

    @property
    def floor(self) -> float:
        return max(MIN_RATE, FLOOR * self.ceiling) if self.ceiling is not None else MIN_RATE

    @property
    def rate(self) -> float | None:
        return self.pace.rate

    def reserve(self) -> float:
        now = self.clock()
        wait = self.pace.reserve(now)
        self.measured.sent(now + wait)
        return wait

    def throttled(self, sent_at: float) -> None:
        """A call sent at ``sent_at`` was refused for rate: cut, once per congestion episode."""
        now = self.clock()
        if self.last_cut is not None and (sent_at < self.last_cut or now - self.last_cut < MIN_GAP):
            return
        measured = self.measured.estimate(now) or self.pace.rate or MIN_RATE
        current = measured if self.pace.rate is None else min(measured, self.pace.rate)
        # What got through is the best guess at the quota: far better than what was sent when
        # the first throttle finds us unpaced and sending many times too fast.
        if (admitted := self.admitted.estimate(now)) > 0:
            current = min(current, admitted)
        self.w_max = current
        self.k = (current * (1 - BETA) / C) ** (1 / 3)
        self.last_cut = now
        self.pace.rate = max(self.floor, current * BETA)

    def answered(self) -> None:
        """A call went through: follow the cubic back up, never past twice what is being sent."""
        now = self.clock()
        self.admitted.sent(now)
        if self.last_cut is None or self.pace.rate is None:
            return
        t = now - self.last_cut
        grown = C * (t - self.k) ** 3 + self.w_max
        measured = self.measured.estimate(now)
        cap = 2 * measured if measured > 0 else grown
        if self.ceiling is not None:
            cap = min(cap, self.ceiling)
        self.pace.rate = max(self.floor, min(grown, cap))
