"""Errors of the extraction stage (all children of :class:`~xview2_ingest.errors.XView2Error`).

The errors of reading an archive (:class:`CorruptArchiveError`, :class:`UnsafeMemberError`)
belong to :mod:`xview2_ingest.archive`, shared with the label index; they are re-exported
here with the advice extraction gives when it meets them.
"""

from __future__ import annotations

from ..archive.errors import CHECK_HINT, CorruptArchiveError, UnsafeMemberError
from ..errors import ChecksumMismatchError, ContentError, UnsafeArchiveError, XView2Error

CORRUPT_HINT = f"members already written are kept; {CHECK_HINT}"
"""Advice of a :class:`CorruptArchiveError` met while extracting."""
REFUSED_HINT = (
    "nothing was written outside the destination and the files this run had "
    "extracted from it were removed; do not trust this archive"
)
"""Advice of an :class:`UnsafeMemberError` once the extractor has removed what it wrote."""


class ArchiveNotDownloadedError(XView2Error):
    """The archive is not published at the destination (absent from the manifest, or its
    size there differs from the manifest's)."""

    def __init__(self, message: str, *, file: str, hint: str | None = None):
        super().__init__(message, file=file, hint=hint or "run `xview2 download` for it first")


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
    "CORRUPT_HINT",
    "REFUSED_HINT",
    "ArchiveChecksumError",
    "ArchiveNotDownloadedError",
    "CorruptArchiveError",
    "UnsafeArchiveError",
    "UnsafeMemberError",
]
