"""One root exception, precise children, and the exit codes they map to.

:class:`ExitCode` is the one list of exit codes; :data:`EXIT_CODES_HELP` is its text for
every subcommand's ``--help`` and the README's table says the same.  Every message says
what happened, to which file, and what to do next.  Messages never contain a signed URL's
query string: build them with :func:`xview2_ingest.links.redact`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the ``xview2`` command (and every report's ``exit_code``) returns."""

    OK = 0
    """Everything asked for was done; every file verified by the catalog's SHA-1, or, for
    a file in no catalog, size-checked and reported as unverified."""
    FAILURE = 1
    """A failure: checksum mismatch, server or destination error, unsafe archive."""
    USAGE = 2
    """Usage error: bad arguments or destination, unreadable links or catalog file."""
    EXPIRED = 3
    """Some links had expired: fresh links are needed for the files named."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C): finished work is kept and the next run resumes."""
    TERMINATED = 143
    """Stopped by SIGTERM: finished work is kept and the next run resumes."""

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "done; each file verified (in no catalog: size-checked, unverified)",
    ExitCode.FAILURE: "failure: checksum mismatch, server or destination error, ...",
    ExitCode.USAGE: "usage error: bad arguments or DEST, unreadable links or catalog",
    ExitCode.EXPIRED: "links expired: the message lists the files needing fresh links",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C): finished bytes are kept, the next run resumes",
    ExitCode.TERMINATED: "stopped by SIGTERM: finished bytes are kept, the next run resumes",
}

EXIT_CODES_HELP = "exit codes:\n" + "".join(
    f"  {int(code):<4} {code.meaning}\n" for code in ExitCode
)
"""The exit codes for ``--help``, one line each (under 80 columns)."""


class XView2Error(Exception):
    """Root of every error the library raises on purpose."""

    exit_code: int = ExitCode.FAILURE

    def __init__(self, message: str, *, file: str | None = None, hint: str | None = None):
        self.file = file
        self.hint = hint
        self.message = message
        text = f"{file}: {message}" if file else message
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)

    @classmethod
    def unexpected(cls, exc: BaseException, *, file: str | None = None) -> XView2Error:
        """A bug (an exception the library did not raise on purpose) reported as a file's
        failure, so that one file's bug never takes the others or the run down."""
        return cls(f"unexpected error: {exc!r}", file=file)


class UsageError(XView2Error):
    """The command line or an input file cannot be understood."""

    exit_code = ExitCode.USAGE


class LinksFileError(UsageError):
    """A links file is malformed, holds a non-HTTP URL or a duplicate file."""


class CatalogError(UsageError):
    """A ``--catalog`` file is not a JSON object of the documented form."""


class LinkExpiredError(XView2Error):
    """The signed link's deadline passed, or the server said it had expired."""

    exit_code = ExitCode.EXPIRED

    def __init__(self, message: str, *, file: str | None = None, hint: str | None = None):
        super().__init__(
            message,
            file=file,
            hint=hint or "open the xview2.org download page again and pass the fresh links",
        )


class LinkError(XView2Error):
    """The server refused the link for another reason (403 not expired, 404, 410, ...)."""


class ServerError(XView2Error):
    """The server misbehaved beyond what retries could mend (5xx, resets, wrong ranges)."""


class ContentError(XView2Error):
    """The bytes are not the expected file: an HTML page, a size that does not match."""


class ChecksumMismatchError(ContentError):
    """The digest computed while streaming differs from the catalog's."""

    def __init__(self, file: str, algorithm: str, expected: str, actual: str):
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{algorithm} mismatch: expected {expected}, got {actual}; nothing was published",
            file=file,
            hint="the download was discarded; run again with fresh links, and if it "
            "repeats, check the catalog entry",
        )


class DestinationError(XView2Error):
    """The destination cannot be written: disk full, permissions, bucket, credentials."""


class TransferInterrupted(XView2Error):
    """The run was stopped (Ctrl-C or a signal); finished parts are kept for the next run."""

    exit_code = ExitCode.INTERRUPTED


class UnsafeArchiveError(XView2Error):
    """An archive member would escape the destination or is not a regular file/folder."""
