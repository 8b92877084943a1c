"""Errors of the extraction stage (all children of :class:`~xview2_ingest.errors.XView2Error`).

The errors of reading an archive (:class:`CorruptArchiveError`, :class:`UnsafeMemberError`)
belong to :mod:`xview2_ingest.archive`, shared with the label index; they are re-exported
here with the advice extraction gives when it meets them.
"""

from __future__ import annotations

from ..archive.errors import CHECK_HINT, CorruptArchiveError, UnsafeMemberError
from ..errors import ChecksumMismatchError, ContentError, UnsafeArchiveError, XView2Error

CORRUPT_HINT = f"nothing from it was published; {CHECK_HINT}"
"""Advice of a :class:`CorruptArchiveError` met while extracting."""
REFUSED_HINT = (
    "nothing was written outside the destination and nothing from it was published; "
    "do not trust this archive"
)
"""Advice of an :class:`UnsafeMemberError` once the extractor has removed what it wrote."""


def fetch_again(dest: str, *, removed: bool = False) -> str:
    """The command that fetches an archive again: a changed or missing one is never
    skipped; one removed after its extraction is, unless forced."""
    if removed:
        return (
            "copy a fresh link for it from the xview2.org download page and run "
            f"`xview2 download --force --links LINKS_FILE --dest {dest}` (it was removed "
            "after its extraction, so only --force fetches it again)"
        )
    return (
        "copy a fresh link for it from the xview2.org download page and run "
        f"`xview2 download --links LINKS_FILE --dest {dest}`: it is fetched again "
        "(no --force needed)"
    )


class ArchiveNotDownloadedError(XView2Error):
    """The archive is not at the destination: not in the manifest, or recorded there but
    absent."""

    def __init__(self, message: str, *, file: str, hint: str | None = None):
        super().__init__(
            message,
            file=file,
            hint=hint or "run `xview2 download --links LINKS_FILE` for it first",
        )


class ArchiveTruncatedError(ContentError):
    """The archive at the destination has another size than the one verified at download."""

    def __init__(self, file: str, dest: str, size: int, expected: int):
        self.size, self.expected = size, expected
        what = "truncated" if size < expected else "longer than it was"
        super().__init__(
            f"{what}: {dest} holds {size:,} bytes of it, {expected:,} were verified at "
            "download; nothing was extracted from it",
            file=file,
            hint=fetch_again(dest),
        )


class ArchiveChecksumError(ChecksumMismatchError):
    """The SHA-1 of the archive, computed while extracting, is not the one verified at
    download (the manifest's) or, for the whole GeoTIFF archive, the catalog's: its bytes
    changed after download.  ``detail`` is what the reader met on the way, if anything."""

    def __init__(
        self,
        file: str,
        algorithm: str,
        expected: str,
        actual: str,
        *,
        reference: str = "verified at download",
        detail: str = "",
        hint: str = "",
    ):
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        damaged = f" ({detail})" if detail else ""
        ContentError.__init__(
            self,
            f"damaged{damaged}: its {algorithm.upper().replace('SHA', 'SHA-')} is now "
            f"{actual}, {reference} it was {expected}; nothing from it was published",
            file=file,
            hint=hint
            or "check that every part is the official one (`xview2 status`) and download "
            "the wrong ones again",
        )


__all__ = [
    "CORRUPT_HINT",
    "REFUSED_HINT",
    "ArchiveChecksumError",
    "ArchiveNotDownloadedError",
    "ArchiveTruncatedError",
    "CorruptArchiveError",
    "UnsafeArchiveError",
    "UnsafeMemberError",
    "fetch_again",
]
