"""A global cap on download speed (``--limit-rate``): one token bucket shared by every
connection of every file in a run.

Tokens are taken *before* a read, for at most the bytes that read may return, and the
unused part is given back after it; so the bytes read in any span of ``t`` seconds never
exceed ``rate * t + burst``.  The bucket may run into debt: a reader that asks for more
than is there gets it at once and the *next* readers wait until the debt is paid.  This
keeps every connection moving in small steps instead of letting one starve the others.
Reads are cut to :attr:`RateLimiter.chunk` bytes (about 1/50 s of the rate) so that no
single read overshoots by much.
"""

from __future__ import annotations

import threading
import time

MIN_CHUNK = 16 * 1024
MAX_CHUNK = 1 << 20


class RateLimiter:
    """Thread-safe token bucket: ``rate`` bytes per second, at most ``burst`` saved up."""

    def __init__(self, rate: int, burst: int | None = None):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.chunk = max(MIN_CHUNK, min(MAX_CHUNK, rate // 50))
        """Largest read to make at once: small enough to keep the rate smooth."""
        self.burst = burst if burst is not None else self.chunk
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._stamp = time.monotonic()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, want: int, stop: threading.Event | None = None) -> int:
        """Take tokens for a read of up to ``want`` bytes (cut to :attr:`chunk`), waiting
        until the bucket is out of debt; return how many bytes may be read.  Returns early
        (with the grant) when ``stop`` is set, so that a run can be stopped."""
        grant = min(want, self.chunk)
        with self._lock:
            self._refill(time.monotonic())
            self._tokens -= grant
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
        return grant

    def refund(self, unused: int) -> None:
        """Give back tokens taken for bytes a read did not return."""
        if unused > 0:
            with self._lock:
                self._refill(time.monotonic())
                self._tokens = min(self.burst, self._tokens + unused)


def limiter_for(rate: int | None) -> RateLimiter | None:
    """A limiter for ``rate`` bytes per second; None (no limit) for None or 0."""
    return RateLimiter(rate) if rate else None
