"""Errors of the extraction stage (all children of :class:`~xview2_ingest.errors.XView2Error`)."""

from __future__ import annotations

from ..errors import ChecksumMismatchError, ContentError, UnsafeArchiveError, XView2Error


class ArchiveNotDownloadedError(XView2Error):
    """The archive is not published at the destination (absent from the manifest, or its
    size there differs from the manifest's)."""

    def __init__(self, message: str, *, file: str, hint: str | None = None):
        super().__init__(message, file=file, hint=hint or "run `xview2 download` for it first")


class CorruptArchiveError(ContentError):
    """The archive cannot be read: truncated, bad gzip data, bad tar headers."""

    def __init__(self, message: str, *, file: str, hint: str | None = None):
        super().__init__(
            message,
            file=file,
            hint=hint
            or "members already written are kept; check the archive (`xview2 status`) and "
            "download it again if it is damaged",
        )


class UnsafeMemberError(UnsafeArchiveError):
    """A member that could escape the destination or is not a regular file or folder.

    Carries the archive, the member name as stored in the archive, and the reason.
    """

    def __init__(self, archive: str, member: str, reason: str):
        self.archive = archive
        self.member = member
        self.reason = reason
        super().__init__(
            f"refused: member {member!r} is unsafe ({reason})",
            file=archive,
            hint="nothing was written outside the destination and the files this run had "
            "extracted from it were removed; do not trust this archive",
        )


class ArchiveChecksumError(ChecksumMismatchError):
    """The digest of the whole archive, computed while extracting, is not the catalog's."""

    def __init__(self, file: str, algorithm: str, expected: str, actual: str):
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        ContentError.__init__(
            self,
            f"{algorithm} of the whole archive is {actual}, expected {expected}; "
            "the extraction is not recorded as complete",
            file=file,
            hint="check that every part is the official one (`xview2 status`) and download "
            "the wrong ones again",
        )


__all__ = [
    "ArchiveChecksumError",
    "ArchiveNotDownloadedError",
    "CorruptArchiveError",
    "UnsafeArchiveError",
    "UnsafeMemberError",
]
