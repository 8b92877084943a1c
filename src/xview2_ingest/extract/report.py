"""Results of :func:`~xview2_ingest.extract.extract`, one per archive."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..errors import ExitCode, XView2Error
from ..reports import error_dict

ExtractStatus = Literal["extracted", "skipped", "failed"]


@dataclass
class ArchiveResult:
    name: str
    """The archive (``xview2_geotiff.tgz`` for the six GeoTIFF parts)."""
    status: ExtractStatus = "failed"
    members_written: int = 0
    """Members published in this run (each name once)."""
    members_skipped: int = 0
    """Members already in place as the verified extraction recorded them (by size, and
    by CRC-32 with ``check``)."""
    members_total: int = 0
    """Regular files in the archive (its member count, every copy of a repeated name)."""
    duplicates: int = 0
    """Earlier copies of a repeated member name, dropped: the last copy wins, as with tar."""
    members_checked: int = 0
    """Members read again and compared with their recorded CRC-32 (``check``)."""
    members_changed: int = 0
    """Of those, the ones whose bytes differed (written again from the archive)."""
    verified: bool = False
    """Every byte read was checked against a SHA-1: the archive's as downloaded (the
    manifest's), or for the GeoTIFF parts each part's or the whole archive's (the
    catalog's).  The condition for removing archives."""
    bytes_written: int = 0
    """Member bytes written in this run."""
    archive_bytes: int = 0
    """Compressed bytes read in this run (0 when nothing had to be read)."""
    seconds: float = 0.0
    sha1: str | None = None
    """SHA1 of the whole archive when it was computed (the GeoTIFF archive)."""
    sources: list[str] = field(default_factory=list)
    assembled: bool = False
    """``xview2_geotiff.tgz`` was assembled from its parts in this run."""
    removed: list[str] = field(default_factory=list)
    """Archives deleted after the verified extraction (``remove_archives``)."""
    kept: list[str] = field(default_factory=list)
    """Archives not removed although asked: their extraction was not verified."""
    error: XView2Error | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["error"] = error_dict(self.error)
        return data


@dataclass
class ExtractReport:
    archives: list[ArchiveResult]
    dest: str

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.archives)

    @property
    def failed(self) -> list[ArchiveResult]:
        return [a for a in self.archives if a.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "archives": [a.to_dict() for a in self.archives],
        }

    @property
    def members_written(self) -> int:
        return sum(a.members_written for a in self.archives)

    @property
    def bytes_written(self) -> int:
        return sum(a.bytes_written for a in self.archives)

    @property
    def exit_code(self) -> int:
        if self.failed:
            return max(a.error.exit_code if a.error else ExitCode.FAILURE for a in self.failed)
        return ExitCode.OK

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for a in self.archives:
            counts[a.status] = counts.get(a.status, 0) + 1
        parts = [f"{n} {status}" for status, n in counts.items()]
        seconds = sum(a.seconds for a in self.archives)
        mb = self.bytes_written / 1e6
        rate = f", {mb / seconds:.1f} MB/s" if seconds > 0 and mb else ""
        skipped = sum(a.members_skipped for a in self.archives)
        checked = sum(a.members_checked for a in self.archives)
        changed = sum(a.members_changed for a in self.archives)
        kept = sum(len(a.kept) for a in self.archives)
        notes = f"; {checked:,} checked, {changed:,} differed" if checked else ""
        if kept:
            notes += f"; {kept} archive(s) kept: extraction not verified against a SHA-1"
        return (
            f"{len(self.archives)} archive(s): {', '.join(parts) or 'nothing to do'}; "
            f"{self.members_written:,} member(s) written, {skipped:,} already in place"
            f"{notes}; {mb:,.1f} MB in {seconds:.1f}s{rate} -> {self.dest}"
        )
