"""Progress events and results.  The library never prints: it calls a callback.

The CLI draws the events with rich; tests record them; API users pass any callable.
Callbacks run on worker threads and must be quick and thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .errors import EXIT_EXPIRED, EXIT_FAILURE, EXIT_OK, LinkExpiredError, XView2Error

EventKind = Literal[
    "probed",  # a link answered; total known; detail holds time left
    "started",  # transfer began; done = bytes already there from an earlier run
    "bytes",  # done = bytes just received
    "retry",  # detail says what failed and when the retry comes
    "verifying",
    "published",
    "skipped",  # already verified at the destination
    "failed",  # detail holds the error message
    "stage",  # a pipeline stage (extract, index) began; name is the stage
]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    name: str
    done: int = 0
    total: int | None = None
    detail: str = ""


ProgressCallback = Callable[[Event], None]


def no_progress(event: Event) -> None:
    """The default callback: ignore everything."""


Status = Literal["verified", "unverified", "skipped", "failed", "expired"]


@dataclass
class FileResult:
    name: str
    status: Status
    size: int | None = None
    digests: dict[str, str] = field(default_factory=dict)
    bytes_fetched: int = 0
    """Bytes received over the network for this file in this run."""
    bytes_resumed: int = 0
    """Bytes that an earlier run had already landed and that were not fetched again."""
    seconds: float = 0.0
    error: XView2Error | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "unverified", "skipped")


@dataclass
class DownloadReport:
    files: list[FileResult]
    dest: str
    peak_buffer_bytes: int = 0
    """Most bytes of part buffers held at once: the enforced memory budget at work."""

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def expired(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "expired"]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def bytes_fetched(self) -> int:
        return sum(f.bytes_fetched for f in self.files)

    @property
    def exit_code(self) -> int:
        if self.failed:
            return max(f.error.exit_code if f.error else EXIT_FAILURE for f in self.failed)
        if self.expired:
            return EXIT_EXPIRED
        return EXIT_OK

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.status] = counts.get(f.status, 0) + 1
        parts = [f"{n} {status}" for status, n in counts.items()]
        seconds = max((f.seconds for f in self.files), default=0.0)
        mb = self.bytes_fetched / 1e6
        rate = f", {mb / seconds:.1f} MB/s" if seconds > 0 and mb else ""
        return (
            f"{len(self.files)} file(s): {', '.join(parts) or 'nothing to do'}; "
            f"{mb:,.1f} MB fetched in {seconds:.1f}s{rate} -> {self.dest}"
        )


def failure_of(error: XView2Error) -> Status:
    return "expired" if isinstance(error, LinkExpiredError) else "failed"
