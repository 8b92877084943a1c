"""Reports: what every operation returns.

Every report satisfies :class:`Report` (``ok``, ``exit_code``, ``summary()``,
``to_dict()``), so the command line and scripts treat them alike: print ``summary()``,
exit with ``exit_code``, or dump ``to_dict()`` as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .errors import ExitCode, LinkExpiredError, XView2Error


@runtime_checkable
class Report(Protocol):
    """The interface every report shares."""

    @property
    def ok(self) -> bool:
        """True when everything asked for succeeded."""
        ...

    @property
    def exit_code(self) -> int:
        """The :class:`~xview2_ingest.errors.ExitCode` a command ends with."""
        ...

    def summary(self) -> str:
        """One line for people."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data for scripts."""
        ...


def error_dict(error: XView2Error | None) -> dict[str, Any] | None:
    """An error as plain data (its message never holds a link's query)."""
    if error is None:
        return None
    return {
        "type": type(error).__name__,
        "message": str(error),
        "file": error.file,
        "exit_code": int(error.exit_code),
    }


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
    bytes_kept: int = 0
    """For a file that did not finish: bytes kept for the next run, which it will not
    fetch again (hashed parts, parts and pieces of parts the store can give back)."""
    seconds: float = 0.0
    error: XView2Error | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "unverified", "skipped")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = error_dict(self.error)
        return data


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
    def bytes_kept(self) -> int:
        """Bytes kept for the next run by the files that did not finish."""
        return sum(f.bytes_kept for f in self.files if not f.ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "peak_buffer_bytes": self.peak_buffer_bytes,
            "bytes_kept": self.bytes_kept,
            "files": [f.to_dict() for f in self.files],
        }

    @property
    def exit_code(self) -> int:
        if self.failed:
            return max(f.error.exit_code if f.error else ExitCode.FAILURE for f in self.failed)
        if self.expired:
            return ExitCode.EXPIRED
        return ExitCode.OK

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.status] = counts.get(f.status, 0) + 1
        parts = [f"{n} {status}" for status, n in counts.items()]
        seconds = max((f.seconds for f in self.files), default=0.0)
        mb = self.bytes_fetched / 1e6
        rate = f", {mb / seconds:.1f} MB/s" if seconds > 0 and mb else ""
        unfinished = [f for f in self.files if not f.ok]
        kept = ""
        if unfinished:
            total = sum(f.size or 0 for f in unfinished)
            kept = (
                f"; kept {human_bytes(self.bytes_kept)} of {human_bytes(total)}"
                "; run again to resume"
            )
        return (
            f"{len(self.files)} file(s): {', '.join(parts) or 'nothing to do'}; "
            f"{mb:,.1f} MB fetched in {seconds:.1f}s{rate} -> {self.dest}{kept}"
        )


def human_bytes(n: int) -> str:
    """412 MB, 1.0 GB: decimal units, as transfer rates are given."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} bytes"


def failure_of(error: XView2Error) -> Status:
    return "expired" if isinstance(error, LinkExpiredError) else "failed"
