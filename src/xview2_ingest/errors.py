"""One root exception, precise children, and the exit codes they map to.

Exit codes (documented in the README and ``xview2 --help``):

* 0 -- every file verified and published
* 1 -- a failure: checksum mismatch, server or destination error, unsafe archive, ...
* 2 -- usage error: bad arguments, unreadable links or catalog file
* 3 -- some links had expired or were refused as expired: fresh links are needed
* 130 -- interrupted (Ctrl-C); finished work is kept for the next run

Every message says what happened, to which file, and what to do next.  Messages never
contain a signed URL's query string: build them with :func:`xview2_ingest.links.redact`.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_EXPIRED = 3
EXIT_INTERRUPTED = 130


class XView2Error(Exception):
    """Root of every error the library raises on purpose."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, file: str | None = None, hint: str | None = None):
        self.file = file
        self.hint = hint
        self.message = message
        text = f"{file}: {message}" if file else message
        if hint:
            text = f"{text} ({hint})"
        super().__init__(text)


class UsageError(XView2Error):
    """The command line or an input file cannot be understood."""

    exit_code = EXIT_USAGE


class LinksFileError(UsageError):
    """A links file is malformed, holds a non-HTTP URL or a duplicate file."""


class CatalogError(UsageError):
    """A ``--catalog`` file is not a JSON object of the documented form."""


class LinkExpiredError(XView2Error):
    """The signed link's deadline passed, or the server said it had expired."""

    exit_code = EXIT_EXPIRED

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

    exit_code = EXIT_INTERRUPTED


class UnsafeArchiveError(XView2Error):
    """An archive member would escape the destination or is not a regular file/folder."""
