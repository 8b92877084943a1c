"""The one small interface every destination implements.

The transfer engine never knows where it writes.  It asks a :class:`Store` for an
:class:`Upload` of a file of known size cut into equal parts, writes numbered parts in any
order, checkpoints its own resume state through the upload, and finally publishes it
(only after verification) or aborts it.  Nothing appears under the final name before
:meth:`Upload.publish`.

What a store can do beyond that is declared by the small capability protocols below
(:class:`RangeReader`, :class:`Composer`, :class:`Copier`, :class:`LocalFiles`, and
:class:`RereadableParts` and :class:`GroupedParts` of an upload), which
callers check with ``isinstance``; never by the concrete class or ``getattr``.  A new
destination (GCS, Azure) is one new module implementing :class:`Store` and
:class:`Upload`, plus whichever capabilities it can offer, and passing the one contract
suite in ``tests/test_stores.py``, which checks every capability a store claims.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class PendingUpload:
    """An unfinished upload left at the destination (for ``status`` and ``clean``)."""

    name: str
    started: str | None
    parts_done: int
    bytes_done: int
    detail: str = ""


@runtime_checkable
class Upload(Protocol):
    name: str
    size: int
    part_size: int

    def done_parts(self) -> set[int]:
        """Parts already persisted, from this run or an earlier one."""
        ...

    def write_part(self, index: int, data: memoryview) -> None:
        """Persist part ``index`` (0-based; it covers ``index * part_size`` onwards)."""
        ...

    def read_part(self, index: int, into: memoryview) -> bool:
        """Fill ``into`` with the first ``len(into)`` bytes of part ``index`` as kept by
        this store (see :meth:`kept_parts`); False if it cannot read them back."""
        ...

    def confirm_part(self, index: int, data: memoryview) -> bool:
        """Make persisted part ``index`` hold exactly ``data``; True if it already did.

        The rule that keeps published bytes equal to hashed bytes: when the engine hashes
        a part that is already persisted (from an earlier run) with bytes it did not just
        write -- fetched again, or read from a local copy -- it calls this, and the store
        must either prove the persisted part is byte for byte ``data`` (a local file
        compares) or write ``data`` again.  A checksum that a source could match with
        other bytes (CRC32, an MD5 ETag) is no proof.
        """
        ...

    def keep_partial(self, index: int, data: memoryview) -> int:
        """Keep ``data``, the first bytes of part ``index``, for a later run that cannot
        write it now (stopped, failed); return how many bytes were kept (0: none).

        Kept bytes need not be at the destination (a remote store may keep them in a
        local spool); :meth:`kept_parts` reports them and :meth:`read_part` reads them
        back.  They are never published without going through :meth:`write_part` or
        :meth:`confirm_part` with the bytes the engine hashed.
        """
        ...

    def kept_parts(self) -> dict[int, int]:
        """Bytes of each part a later run can read back with :meth:`read_part` instead of
        fetching them: a whole part's length for parts persisted and readable, fewer for
        parts kept in part by :meth:`keep_partial`."""
        ...

    def load_state(self) -> dict[str, Any] | None:
        """The engine's resume state saved by :meth:`checkpoint`, if any."""
        ...

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Durably record the engine's state together with the parts done so far."""
        ...

    def publish(self) -> None:
        """Make the file appear under its final name, atomically; drop resume state."""
        ...

    def abort(self) -> None:
        """Discard everything written for this upload, resume state included."""
        ...

    def close(self) -> None:
        """Release local resources, leaving the unfinished upload for a later run."""
        ...


class UnreadableParts:
    """The part-reading half of :class:`Upload` for a remote store whose persisted parts
    are not read back (GCS part objects, Azure staged blocks): a part hashed again is
    always sent again, and pieces of parts are not kept across a stop."""

    def write_part(self, index: int, data: memoryview) -> None:  # pragma: no cover
        raise NotImplementedError

    def read_part(self, index: int, into: memoryview) -> bool:
        return False  # the engine fetches a done part again rather than reading it back

    def confirm_part(self, index: int, data: memoryview) -> bool:
        """Send the part again, always: the stored checksum could be matched by a source
        serving other bytes under the same name (only the few parts re-hashed after a
        stop or a crash come here)."""
        self.write_part(index, data)
        return False

    def keep_partial(self, index: int, data: memoryview) -> int:
        return 0

    def kept_parts(self) -> dict[int, int]:
        return {}


@runtime_checkable
class RereadableParts(Protocol):
    """An upload that can give back, whole and at once, any part it has written (a local
    file).  The engine may then let go of a part's buffer as soon as the part is written
    and read it back when the in-order digest reaches it: the memory budget no longer
    bounds how far ahead of the digest the connections read (long spans over a WAN)."""

    def has_part(self, index: int) -> bool:
        """Part ``index`` is written whole and :meth:`Upload.read_part` can read it."""
        ...


@runtime_checkable
class GroupedParts(Protocol):
    """An upload that stores ``group_parts`` consecutive parts as one object, sent in
    order (GCS: a resumable upload per group, so a file needs few objects and one
    compose call).  A part is durable only once its whole group is: the engine saves
    resume state only where every part hashed is in a finished group, and the parts of a
    group are written in index order (:meth:`Upload.write_part` waits for the group's
    earlier parts, which other connections may still be fetching)."""

    group_parts: int

    def interrupt(self) -> None:
        """Wake, with an error, every :meth:`Upload.write_part` waiting for its turn: the
        transfer stopped, and the parts it waits for will not come."""
        ...


@runtime_checkable
class Store(Protocol):
    url: str
    """Where the store writes, for display (``/data/xview2``, ``s3://bucket/prefix``, ...)."""
    min_part_size: int
    """Smallest part the store accepts (the last part of a file may be smaller)."""
    default_part_size: int
    max_parts: int
    checkpoint_interval: float
    """Seconds between resume checkpoints (0: after every part): the work a kill can lose."""
    page_aligned_buffers: bool
    """Whether ``write_part`` needs page-aligned memory (for direct I/O); if not, the
    engine passes views of bytearrays."""

    def open_upload(self, name: str, size: int, part_size: int) -> Upload:
        """Resume the unfinished upload of ``name`` if it is for ``size`` bytes, else start one.

        ``part_size`` applies to a new upload; a resumed one keeps the part size it was
        started with (its ``part_size``), so changing settings never costs finished parts.
        """
        ...

    def size_of(self, name: str) -> int | None:
        """Size of the published file ``name``, or None when it is absent."""
        ...

    def read_bytes(self, name: str) -> bytes | None:
        """A small published file (the manifest), or None."""
        ...

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a small file atomically (the manifest, index files)."""
        ...

    def open_read(self, name: str) -> IO[bytes]:
        """A forward-only binary stream of a published file (for extraction)."""
        ...

    def put_stream(self, name: str, stream: IO[bytes], size: int) -> None:
        """Write ``size`` bytes from ``stream`` under ``name`` (an extracted member)."""
        ...

    def delete(self, name: str) -> None: ...

    def list_files(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Published names under ``prefix`` with their sizes."""
        ...

    def pending_uploads(self) -> list[PendingUpload]: ...

    def abort_pending(
        self, name: str | None = None, *, dry_run: bool = False
    ) -> list[PendingUpload]:
        """Abort this tool's own unfinished uploads (all, or of ``name``); return them.
        ``dry_run`` only lists them.  Uploads another tool started are never touched."""
        ...


# -- optional capabilities ------------------------------------------------------------


@runtime_checkable
class RangeReader(Protocol):
    """Reads a published file from an offset (extraction resumes a broken stream)."""

    def open_read_at(self, name: str, offset: int) -> IO[bytes]:
        """Like :meth:`Store.open_read`, starting ``offset`` bytes into the file."""
        ...


@runtime_checkable
class PartReader(Protocol):
    """Reads a bounded byte range of a published file into a caller's buffer, so that
    many ranges can be read at once (``verify`` re-hashes a file at read speed)."""

    def read_into(self, name: str, offset: int, into: memoryview) -> None:
        """Fill ``into`` with the bytes of ``name`` from ``offset``; a
        :class:`~xview2_ingest.errors.DestinationError` when the file ends before."""
        ...


@runtime_checkable
class Composer(Protocol):
    """Publishes the concatenation of published files without reading them through
    this process (the GeoTIFF parts into one archive)."""

    def compose(self, name: str, sources: tuple[str, ...], *, workers: int = 8) -> int:
        """Publish ``sources`` joined in order as ``name``, atomically; return its size."""
        ...


@runtime_checkable
class Copier(Protocol):
    """Makes a second name for a published file without sending its bytes through this
    process where the store allows it (hard link locally, server-side copy on objects)."""

    def copy(self, source: str, target: str) -> None:
        """Publish the bytes of ``source`` under ``target``, atomically (``target`` is
        replaced if it exists)."""
        ...


@runtime_checkable
class Exclusive(Protocol):
    """Lets one run at a time download into the store (a lock file, a lease object), so
    two runs never write the same unfinished upload."""

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold the destination for the block; raise :class:`~..errors.DestinationError`
        naming the other run if one holds it.  Released when the block ends, and also
        when the process dies (or, where the store cannot see that, after an expiry)."""
        ...


@runtime_checkable
class PartSizer(Protocol):
    """A store that needs parts of another size than the engine's plan (GCS: a
    resumable upload takes chunks in multiples of 256 KiB)."""

    def part_size_for(self, size: int, planned: int, budget: int) -> int:
        """Bytes per part for a new upload of ``size`` bytes, given the engine's
        ``planned`` size and its memory ``budget`` (a buffer per connection)."""
        ...


@runtime_checkable
class LocalFiles(Protocol):
    """A store whose published files are plain files on this machine (fast paths:
    scanning folders, reading labels with ``open``, staging beside the destination)."""

    root: Path
    work: Path
    """The store's own hidden folder (temporary files, resume state)."""

    def path_of(self, name: str) -> Path:
        """The local path of ``name``, refused when it would leave :attr:`root`."""
        ...
