"""Errors of reading an archive (children of :class:`~xview2_ingest.errors.XView2Error`).

Raised by the reader for extraction and for ``index --from-archives`` alike; the caller
may give a ``hint`` that says what its own failure left behind.
"""

from __future__ import annotations

from ..errors import ContentError, UnsafeArchiveError

CHECK_HINT = (
    "check it with `xview2 status`; if it is damaged, download it again "
    "(`xview2 download --force` with a fresh link)"
)


class CorruptArchiveError(ContentError):
    """The archive cannot be read: truncated, bad gzip data, bad tar headers, or headers
    beyond the reader's limits."""

    def __init__(self, message: str, *, file: str, hint: str | None = None):
        super().__init__(message, file=file, hint=hint or CHECK_HINT)


class UnsafeMemberError(UnsafeArchiveError):
    """A member that could escape the destination or is not a regular file or folder.

    Carries the archive, the member name as stored in the archive, and the reason.
    """

    def __init__(self, archive: str, member: str, reason: str, *, hint: str | None = None):
        self.archive = archive
        self.member = member
        self.reason = reason
        super().__init__(
            f"refused: member {member!r} is unsafe ({reason})",
            file=archive,
            hint=hint or "nothing was written outside the destination; do not trust this archive",
        )


__all__ = ["CHECK_HINT", "CorruptArchiveError", "UnsafeMemberError"]
