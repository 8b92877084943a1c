"""Stopping on a signal: the first Ctrl-C or SIGTERM stops cleanly, a second one at once.

A transfer stopped cleanly keeps what it can for the next run: parts written, bytes of
parts that were under way, the digest's state, saved to the destination.  That takes a
moment (a few requests on S3), so the first signal only *asks* running transfers to stop
(:data:`STOP`); they finish their bookkeeping and the command exits with 130 (SIGINT) or
143 (SIGTERM).  A second signal exits at once with the same code.

Signal handlers can only be installed by the main thread, so the command line installs
them with :func:`graceful_signals` around a command.  While no transfer is running (a
prompt, an extraction), the first signal behaves as before: ``KeyboardInterrupt`` for
SIGINT, and for SIGTERM the same, turned into exit 143 when it leaves the block.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from ..errors import ExitCode


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while no transfer was running to stop cleanly."""


class StopRequest:
    """A process-wide request to stop, set by a signal and watched by running transfers."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.exit_code: ExitCode = ExitCode.INTERRUPTED
        self.running = 0
        """Transfers running now (each :class:`TransferEngine.run` counts itself)."""

    def is_set(self) -> bool:
        return self._event.is_set()

    def request(self, code: ExitCode) -> None:
        self.exit_code = code
        self._event.set()

    def clear(self) -> None:
        self._event.clear()
        self.exit_code = ExitCode.INTERRUPTED

    @contextlib.contextmanager
    def watching(self) -> Iterator[StopRequest]:
        """Count a running transfer, so that a signal stops it instead of raising."""
        with self._lock:
            self.running += 1
        try:
            yield self
        finally:
            with self._lock:
                self.running -= 1


STOP = StopRequest()

_CODES = {signal.SIGINT: ExitCode.INTERRUPTED, signal.SIGTERM: ExitCode.TERMINATED}


def _say(message: bytes) -> None:
    """Write to stderr from the handler; when nobody reads it any more (a closed pipe),
    the stop goes on without the message."""
    with contextlib.suppress(OSError):
        os.write(2, message)


def _handler(signum: int, frame: FrameType | None) -> None:
    code = _CODES.get(signal.Signals(signum), ExitCode.INTERRUPTED)
    if STOP.is_set():
        _say(b"\nstopping at once; work not yet saved is lost\n")
        os._exit(int(STOP.exit_code))
    if STOP.running:
        STOP.request(code)
        _say(b"\nstopping; saving what was fetched (press Ctrl-C again to quit now)\n")
        return
    STOP.request(code)  # a second signal during the KeyboardInterrupt's unwinding exits
    raise Terminated() if code == ExitCode.TERMINATED else KeyboardInterrupt()


@contextlib.contextmanager
def graceful_signals() -> Iterator[StopRequest]:
    """Install the SIGINT and SIGTERM handlers for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    previous = {s: signal.signal(s, _handler) for s in _CODES}
    try:
        yield STOP
    except Terminated:
        raise SystemExit(int(ExitCode.TERMINATED)) from None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        STOP.clear()
