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
    def interrupted(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "interrupted"]

    @property
    def unverified(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "unverified"]

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
        codes = [f.error.exit_code if f.error else ExitCode.FAILURE for f in self.failed]
        codes += [f.error.exit_code if f.error else ExitCode.INTERRUPTED for f in self.interrupted]
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


def _counts(states: list[str]) -> str:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())


VerifyStatus = Literal["ok", "corrupt", "missing", "unverifiable", "failed"]


@dataclass
class VerifyResult:
    """One published file hashed again (``ok``: it matched every reference)."""

    name: str
    status: VerifyStatus
    size: int | None = None
    expected: dict[str, str] = field(default_factory=dict)
    """The reference digests: the catalog's, else those recorded at download."""
    actual: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    """Where ``expected`` came from: ``catalog`` or ``manifest``."""
    seconds: float = 0.0
    error: XView2Error | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unverifiable")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = error_dict(self.error)
        return data


@dataclass
class VerifyReport:
    """What :func:`~xview2_ingest.verify` found: every corrupt file is named with the
    digest expected and the one found, and marked in the manifest."""

    dest: str
    files: list[VerifyResult]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def corrupt(self) -> list[VerifyResult]:
        return [f for f in self.files if f.status == "corrupt"]

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.FAILURE

    @property
    def bytes_read(self) -> int:
        return sum(f.size or 0 for f in self.files if f.actual)

    def summary(self) -> str:
        seconds = sum(f.seconds for f in self.files)
        rate = f", {self.bytes_read / 1e6 / seconds:,.0f} MB/s" if seconds > 0 else ""
        return (
            f"{len(self.files)} file(s) at {self.dest}: "
            f"{_counts([f.status for f in self.files]) or 'nothing to verify'}; "
            f"{self.bytes_read / 1e6:,.1f} MB hashed in {seconds:.1f}s{rate}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "files": [f.to_dict() for f in self.files],
        }


ImportStatus = Literal["imported", "seeded", "skipped", "failed"]


@dataclass
class ImportResult:
    """One file adopted by :func:`~xview2_ingest.import_archives`.

    ``imported``: published and recorded like a download; ``seeded``: a partial file whose
    whole parts now wait at the destination for ``download`` to fetch the rest.
    """

    source: str
    """The file's own name on this machine (never its folder)."""
    name: str | None
    status: ImportStatus
    size: int | None = None
    bytes_placed: int = 0
    """Bytes now at the destination: the whole file, or the parts a partial one covers."""
    method: str = ""
    """``link``, ``rename``, ``copy`` (a local copy) or ``upload`` (multipart, object stores)."""
    verified: bool = False
    digests: dict[str, str] = field(default_factory=dict)
    detail: str = ""
    seconds: float = 0.0
    error: XView2Error | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = error_dict(self.error)
        return data


@dataclass
class ImportReport:
    dest: str
    files: list[ImportResult]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def exit_code(self) -> int:
        failed = [f for f in self.files if f.status == "failed"]
        if failed:
            return max(f.error.exit_code if f.error else ExitCode.FAILURE for f in failed)
        return ExitCode.OK

    def summary(self) -> str:
        placed = sum(f.bytes_placed for f in self.files) / 1e6
        return (
            f"{len(self.files)} file(s): {_counts([f.status for f in self.files]) or 'none'}; "
            f"{placed:,.1f} MB placed -> {self.dest}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "files": [f.to_dict() for f in self.files],
        }


PlanAction = Literal["fetch", "resume", "skip", "fail", "expired"]


@dataclass
class PlannedFile:
    """What ``download`` would do with one link, learnt from a 2-byte probe."""

    name: str
    action: PlanAction
    size: int | None = None
    ranges: bool | None = None
    """Whether the server takes Range requests (parallel, resumable)."""
    seconds_left: float | None = None
    """How long the link stays valid, when it says."""
    catalog: str = "none"
    """``sha1``/``md5``: verified against the catalog; ``size``: size only; ``none``."""
    bytes_to_fetch: int = 0
    bytes_resumable: int = 0
    """Bytes an unfinished transfer already holds (kept if the server's file is unchanged)."""
    error: XView2Error | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = error_dict(self.error)
        return data


@dataclass
class DownloadPlan:
    """The report of ``download --dry-run``: every link probed, no body fetched."""

    dest: str
    files: list[PlannedFile]
    space_needed: int = 0
    """Bytes the destination must still find room for."""
    space_free: int | None = None
    """Free bytes at a local destination; None where it cannot be known (object stores)."""

    @property
    def space_short(self) -> bool:
        return self.space_free is not None and self.space_needed > self.space_free

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK

    @property
    def exit_code(self) -> int:
        failed = [f for f in self.files if f.action == "fail"]
        if failed:
            return max(f.error.exit_code if f.error else ExitCode.FAILURE for f in failed)
        if self.space_short:
            return ExitCode.FAILURE
        if any(f.action == "expired" for f in self.files):
            return ExitCode.EXPIRED
        return ExitCode.OK

    @property
    def bytes_to_fetch(self) -> int:
        return sum(f.bytes_to_fetch for f in self.files)

    def summary(self) -> str:
        free = "" if self.space_free is None else f" of {self.space_free / 1e9:,.1f} GB free"
        short = "; NOT ENOUGH SPACE" if self.space_short else ""
        return (
            f"dry run, {len(self.files)} link(s): "
            f"{_counts([f.action for f in self.files]) or 'none'}; "
            f"{self.bytes_to_fetch / 1e6:,.1f} MB to fetch, "
            f"{self.space_needed / 1e9:,.2f} GB needed{free} at {self.dest}{short}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "dry_run": True,
            "bytes_to_fetch": self.bytes_to_fetch,
            "space_needed": self.space_needed,
            "space_free": self.space_free,
            "files": [f.to_dict() for f in self.files],
        }
