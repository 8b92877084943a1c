"""Progress events.  The library never prints: it calls a callback with an :class:`Event`.

The CLI draws the events with rich; tests record them; API users pass any callable.
Callbacks run on worker threads and must be quick and thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

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
    "info",  # a notice worth showing (detail)
]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    name: str
    done: int = 0
    total: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (``kind``, ``name``, ``done``, ``total``, ``detail``)."""
        return asdict(self)


ProgressCallback = Callable[[Event], None]


def no_progress(event: Event) -> None:
    """The default callback: ignore everything."""
