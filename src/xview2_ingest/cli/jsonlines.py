"""``--json``: newline-delimited JSON on standard output, for scripts.

While a command runs, one ``{"type": "event", ...}`` line per progress event (see
:class:`~xview2_ingest.events.Event`); ``bytes`` events of one file are summed and written
at most every :data:`BYTES_INTERVAL` seconds, so that a fast download does not write a
line per network read.  Then exactly one final line: ``{"type": "report", "final": true,
...}`` with the report, or ``{"type": "error", "final": true, ...}`` when the command
could not run.  Human output (progress, summaries) stays on standard error.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from xview2_ingest.errors import XView2Error
from xview2_ingest.events import Event
from xview2_ingest.reports import Report, error_dict

BYTES_INTERVAL = 0.25


class JsonLines:
    """The ``--json`` writer of one command run; safe to call from worker threads."""

    def __init__(self, command: str, stream: IO[str] | None = None):
        self.command = command
        self.stream = stream if stream is not None else sys.stdout
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._pending: dict[str, Event] = {}
        self._flushed: dict[str, float] = {}
        self._closed = False

    def _write(self, data: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self.stream.write(json.dumps(data, default=str, separators=(",", ":")) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            self._closed = True  # the reader went away: the run goes on without it

    def _event_line(self, event: Event) -> None:
        elapsed = round(time.monotonic() - self.started, 3)
        self._write({"type": "event", **event.to_dict(), "elapsed": elapsed})

    def _flush(self, name: str | None = None) -> None:
        for key in [name] if name is not None else list(self._pending):
            pending = self._pending.pop(key, None)
            if pending is not None:
                self._event_line(pending)
                self._flushed[key] = time.monotonic()

    def event(self, event: Event) -> None:
        """Write ``event`` (``bytes`` events are summed per file, see the module)."""
        with self._lock:
            if event.kind != "bytes":
                self._flush(None if event.kind == "stage" else event.name)
                self._event_line(event)
                return
            before = self._pending.get(event.name)
            done = event.done + (before.done if before else 0)
            total = event.total
            if total is None and before is not None:
                total = before.total
            self._pending[event.name] = Event("bytes", event.name, done, total)
            if time.monotonic() - self._flushed.get(event.name, 0.0) >= BYTES_INTERVAL:
                self._flush(event.name)

    def report(self, report: Report, **extra: Any) -> None:
        """The final line: the report's ``to_dict()`` and the exit code."""
        with self._lock:
            self._flush()
            self._write(
                {
                    "type": "report",
                    "final": True,
                    "command": self.command,
                    "ok": bool(report.ok),
                    "exit_code": int(report.exit_code),
                    "report": report.to_dict(),
                    **extra,
                }
            )

    def error(self, error: BaseException, exit_code: int) -> None:
        """The final line of a command that could not run."""
        with self._lock:
            self._flush()
            self._write(
                {
                    "type": "error",
                    "final": True,
                    "command": self.command,
                    "ok": False,
                    "exit_code": int(exit_code),
                    "error": error_json(error, exit_code),
                }
            )


def error_json(error: BaseException, exit_code: int) -> dict[str, Any]:
    if isinstance(error, XView2Error):
        data = error_dict(error)
        assert data is not None
        return data
    return {
        "type": type(error).__name__,
        "message": str(error),
        "file": None,
        "hint": None,
        "exit_code": int(exit_code),
    }
