"""Reports: what every operation returns.

Every report satisfies :class:`Report` (``ok``, ``exit_code``, ``summary()``,
``to_dict()``), so the command line and scripts treat them alike: print ``summary()``,
exit with ``exit_code``, or dump ``to_dict()`` as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .errors import ExitCode, LinkExpiredError, TransferInterrupted, XView2Error


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
        "hint": error.hint,
        "exit_code": int(error.exit_code),
    }


Status = Literal["verified", "unverified", "skipped", "failed", "expired", "interrupted"]
"""``unverified``: in no catalog, so only its size was checked; ``interrupted``: stopped
by Ctrl-C or a signal, its finished parts kept for the next run."""


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
    def interrupted(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "interrupted"]

    @property
    def unverified(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "unverified"]

    @property
    def bytes_fetched(self) -> int:
        return sum(f.bytes_fetched for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "peak_buffer_bytes": self.peak_buffer_bytes,
            "files": [f.to_dict() for f in self.files],
        }

    @property
    def exit_code(self) -> int:
        codes = [f.error.exit_code if f.error else ExitCode.FAILURE for f in self.failed]
        if self.interrupted:
            codes.append(ExitCode.INTERRUPTED)
        if codes:
            return max(codes)
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
        return (
            f"{len(self.files)} file(s): {', '.join(parts) or 'nothing to do'}; "
            f"{mb:,.1f} MB fetched in {seconds:.1f}s{rate} -> {self.dest}"
        )


def failure_of(error: XView2Error) -> Status:
    if isinstance(error, TransferInterrupted):
        return "interrupted"
    return "expired" if isinstance(error, LinkExpiredError) else "failed"


def unfinished_words(dest: str, count: int) -> str:
    """What unfinished transfers are at ``dest``: partial files on a disk, uploads not
    yet completed on an object store."""
    noun = "unfinished upload" if "://" in dest else "partial download"
    return f"{count} {noun}{'' if count == 1 else 's'}"


FileState = Literal[
    "verified", "unverified", "corrupt", "truncated", "extracted", "partial", "missing"
]
"""``corrupt``: its bytes no longer match the SHA-1 verified at download (found by
``verify`` or ``extract``); ``truncated``: another size than the one verified;
``download`` fetches both again.  ``extracted``: removed after its verified extraction
(``extract --remove-archives``); ``download`` does not fetch it again."""


@dataclass
class FileStatus:
    """One file at a destination, as :func:`~xview2_ingest.status` sees it."""

    name: str
    state: FileState
    size: int | None = None
    bytes_done: int = 0
    sha1: str | None = None
    verified_at: str | None = None
    in_catalog: bool = True
    detail: str = ""
    """What is wrong and what to do, for the states other than verified."""


@dataclass
class StatusReport:
    """What is verified, partial or missing at a destination."""

    dest: str
    files: list[FileStatus]
    pending: list[Any] = field(default_factory=list)
    """:class:`~xview2_ingest.stores.PendingUpload` entries: unfinished transfers."""

    @property
    def ok(self) -> bool:
        return True

    @property
    def exit_code(self) -> int:
        return ExitCode.OK

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for f in self.files:
            counts[f.state] = counts.get(f.state, 0) + 1
        parts = ", ".join(f"{n} {state}" for state, n in counts.items())
        return f"{len(self.files)} file(s) at {self.dest}: {parts or 'none'}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "files": [asdict(f) for f in self.files],
            "pending_uploads": [asdict(p) for p in self.pending],
        }


@dataclass
class CleanReport:
    """What :func:`~xview2_ingest.clean` discarded."""

    dest: str
    discarded: list[str] = field(default_factory=list)
    """Names of the unfinished transfers discarded (or, in a dry run, to be discarded)."""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return True

    @property
    def exit_code(self) -> int:
        return ExitCode.OK

    def summary(self) -> str:
        verb = "would discard" if self.dry_run else "discarded"
        words = unfinished_words(self.dest, len(self.discarded))
        names = f": {', '.join(self.discarded)}" if self.discarded else ""
        return f"{verb} {words} at {self.dest}{names}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "dry_run": self.dry_run,
            "discarded": self.discarded,
        }


@dataclass
class IngestReport:
    """The stages of :func:`~xview2_ingest.ingest`, each with its own report; a stage
    that did not run (an earlier one failed, or it was not asked for) is None."""

    dest: str
    stages: dict[str, Report | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.stages.values() if r is not None)

    @property
    def exit_code(self) -> int:
        for report in self.stages.values():
            if report is not None and report.exit_code != ExitCode.OK:
                return report.exit_code
        return ExitCode.OK

    def summary(self) -> str:
        return "\n".join(r.summary() for r in self.stages.values() if r is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            **{k: (r.to_dict() if r is not None else None) for k, r in self.stages.items()},
        }
