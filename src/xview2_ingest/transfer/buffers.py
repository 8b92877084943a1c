"""Part buffers under one byte budget: the bound on a run's memory.

Every part a transfer, a verification or an import holds is a buffer of this pool, from
the moment it is read until it is hashed and written; a lane that would go over the
budget waits (and TCP holds the server back), so memory never grows with the file.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable

Buffer = mmap.mmap | bytearray


class BufferPool:
    """Part buffers under a byte budget, reused between parts.

    With ``page_aligned`` the buffers are anonymous memory maps, which a local store can
    hand to the disk with direct I/O.  Otherwise they are bytearrays, which an S3 store
    sends whole: botocore takes a bytearray as a request body (it refuses a memoryview)
    and urllib3 passes it to one ``sendall``, with no copy and no Python loop per block.
    """

    def __init__(self, budget: int, *, page_aligned: bool = True):
        self.budget = budget
        self.page_aligned = page_aligned
        self._cond = threading.Condition()
        self._used = 0
        self._cached: list[Buffer] = []
        self.peak = 0

    def _cached_bytes(self) -> int:
        return sum(len(b) for b in self._cached)

    def acquire(
        self,
        size: int,
        cancelled: Callable[[], bool],
        keep_free: Callable[[], int] | None = None,
    ) -> Buffer | None:
        """A buffer of ``size`` once the budget allows, leaving ``keep_free()`` bytes of
        it unused (asked again at every wake); None if ``cancelled()`` first."""
        with self._cond:
            while self._used and self._used + size + (keep_free() if keep_free else 0) > (
                self.budget
            ):
                if cancelled():
                    return None
                self._cond.wait(0.2)
            for i, buf in enumerate(self._cached):
                if len(buf) == size:
                    self._cached.pop(i)
                    break
            else:
                while self._cached and self._used + self._cached_bytes() + size > self.budget:
                    self._cached.pop()
                buf = mmap.mmap(-1, size) if self.page_aligned else bytearray(size)
            self._used += size
            self.peak = max(self.peak, self._used)
            return buf

    def release(self, buf: Buffer) -> None:
        with self._cond:
            self._used -= len(buf)
            self._cached.append(buf)
            self._cond.notify_all()
