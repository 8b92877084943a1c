"""How many connections a file gets: pinned by ``--connections``, else found by measuring.

A CDN caps each TCP connection, and the user rarely knows the cap; the only way to fill a
link is to add connections while the file's aggregate rate keeps rising.  The tuner
starts a few, and after each step compares the rate measured over one interval (once
the new connections have had time for their handshake and first reply) with the rate
before: while the step paid off (at least half of what the extra connections would
give on a per-connection-capped link), it doubles the count again; otherwise it settles.
It never goes past its ceiling: ``--max-connections`` and what the memory budget can
feed (a part buffer for each connection and one spare for the digest).
"""

from __future__ import annotations

from dataclasses import dataclass, field

START = 4
"""Connections a file starts with when none are pinned."""
PAYOFF = 0.5
"""A step must bring at least this share of its proportional gain to count as rising."""
MIN_INTERVAL = 0.25
MAX_INTERVAL = 2.0
ROUND_TRIPS_PER_INTERVAL = 5


def lane_limit(max_connections: int, budget: int, part: int) -> int:
    """The most connections a file may have: ``--max-connections``, and what the memory
    budget can feed (a part buffer for each, plus one for the digest's reserve)."""
    by_memory = max(1, budget // max(1, part) - 1)
    return max(1, min(max_connections, by_memory))


@dataclass
class ConnectionTuner:
    pinned: int | None
    """The count the user chose (``--connections``), or None to measure."""
    limit: int
    """The most connections this file may have (max connections, memory budget)."""
    lanes: int = 0
    settled_at: str | None = None
    """Why the count stopped growing, once it has."""
    _base_rate: float | None = None
    _last: tuple[float, int] | None = None
    _skip: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)
    """(connections, measured bytes/s) at each step, for the log."""

    @property
    def ceiling(self) -> int:
        return max(1, min(self.pinned or self.limit, self.limit))

    def start(self) -> int:
        """Connections to open first."""
        self.lanes = self.ceiling if self.pinned else min(START, self.ceiling)
        if self.pinned:
            self.settled_at = "--connections"
        elif self.lanes >= self.ceiling:
            self.settled_at = "the ceiling"
        self._skip = 1
        return self.lanes

    def interval(self, latency: float | None) -> float:
        """Seconds between measurements: a few round trips of the link, within bounds."""
        if latency is None:
            return 0.5
        return min(MAX_INTERVAL, max(MIN_INTERVAL, ROUND_TRIPS_PER_INTERVAL * latency))

    def settle(self, why: str) -> None:
        if self.settled_at is None:
            self.settled_at = why

    def observe(self, now: float, fetched: int) -> int:
        """Take one sample of the bytes fetched so far; return connections to add."""
        last, self._last = self._last, (now, fetched)
        if self.settled_at is not None or last is None or now <= last[0]:
            return 0
        if self._skip:  # the newest connections were still opening
            self._skip -= 1
            return 0
        rate = (fetched - last[1]) / (now - last[0])
        self.history.append((self.lanes, rate))
        before, self._base_rate = self._base_rate, rate
        if before is not None:
            previous = self.history[-2][0] if len(self.history) > 1 else self.lanes
            ideal = self.lanes / max(1, previous) - 1
            if rate < before * (1 + PAYOFF * ideal):
                self.settle(f"the rate stopped rising at {rate / 1e6:.0f} MB/s")
                return 0
        more = min(self.lanes, self.ceiling - self.lanes)
        if more <= 0:
            self.settle("the ceiling")
            return 0
        self.lanes += more
        self._skip = 1
        return more

    def describe(self, lanes: int) -> str:
        """One line for the log and the ``info`` event."""
        if self.pinned:
            return f"{lanes} connections (pinned by --connections)"
        steps = ", ".join(f"{n}: {r / 1e6:.0f} MB/s" for n, r in self.history)
        why = self.settled_at or "the file ended"
        if why == "the ceiling":
            why = f"the most --max-connections and the memory budget allow ({self.ceiling})"
        return f"{lanes} connections, chosen by measuring ({why}; {steps or 'no samples'})"
