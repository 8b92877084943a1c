"""Adopt archives already on this machine: ``xview2 import FILE...``.

A complete file is identified by its name (or, renamed, by its SHA-1 in the catalog),
hashed and checked against the catalog before anything is placed, then published like a
download and recorded in the manifest:

* into a local folder on the same file system: a hard link (``--move``: a rename) to a
  temporary name in the store's work folder, checked to be the very file that was hashed,
  then renamed into place: no byte is copied;
* anywhere else: through the store's :class:`~.stores.Upload` (a copy to a temporary file
  locally, a parallel multipart upload on S3), hashed again on the way and published only
  if it is still the file that matched.

A partial browser download (``.crdownload``, ``.part``, ``.download``, ``.partial``, or
``partial=True``) holds the first bytes of an archive.  Its whole parts are written into
the destination's upload and the engine's resume state is checkpointed after them
(:mod:`.transfer.seed`), so the next ``download`` fetches only the rest; the SHA-1 of the
whole file, imported bytes included, is checked at its end as always.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog, CatalogEntry
from .errors import ChecksumMismatchError, ContentError, UsageError, XView2Error
from .events import Event, ProgressCallback, no_progress
from .manifest import Manifest
from .reports import ImportReport, ImportResult
from .stores import LocalFiles, Store, Upload
from .stores.local import os_error
from .transfer.buffers import BufferPool
from .transfer.digest import Digest
from .transfer.engine import TransferOptions, choose_algorithms, plan_part_size
from .transfer.inorder import hash_in_order
from .transfer.seed import seeded_state

log = logging.getLogger(__name__)

MiB = 1 << 20
PARTIAL_SUFFIXES = (".crdownload", ".part", ".download", ".partial")
"""What browsers call a download under way: Chrome, Firefox, Safari, and others."""
READ_PART = 8 * MiB
READ_WINDOW = 3
IMPORT_DIR = "import"
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES)


def name_of(path: Path) -> tuple[str, bool]:
    """The archive name a file stands for, and whether its name says it is partial."""
    for suffix in PARTIAL_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)], True
    return path.name, False


@dataclass(frozen=True)
class _Source:
    """A file to import, and what it was when it was read."""

    path: Path
    fd: int
    size: int
    stamp: tuple[int, int, int, int]
    """(device, inode, size, mtime_ns): the same file, unchanged."""

    def read(self, index: int, view: memoryview, part: int) -> None:
        offset = index * part
        while view:
            n = os.preadv(self.fd, [view], offset)
            if n <= 0:
                raise ContentError(f"ended before byte {offset:,}", file=self.path.name)
            view, offset = view[n:], offset + n


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Importer:
    """Imports files into one store; :meth:`run` returns the report."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        *,
        progress: ProgressCallback | None = None,
        partial: bool = False,
        size: int | None = None,
        move: bool = False,
        force: bool = False,
        memory_budget: int = 160 * MiB,
    ):
        self.store, self.catalog = store, catalog
        self.progress = progress or no_progress
        self.partial, self.size, self.move, self.force = partial, size, move, force
        self.memory_budget = memory_budget
        self.manifest = Manifest(store)

    def run(self, paths: Sequence[str | os.PathLike[str]]) -> ImportReport:
        if self.size is not None and len(paths) != 1:
            raise UsageError("--size applies to one file; import the others separately")
        return ImportReport(self.store.url, [self.one(Path(p)) for p in paths])

    def one(self, path: Path) -> ImportResult:
        started = time.monotonic()
        name, partial = name_of(path)
        result = ImportResult(path.name, name, "failed")
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            result.error = XView2Error(
                f"cannot read it: {exc.strerror}", file=str(path), hint="check the path"
            )
            return result
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise XView2Error(
                    "is not a regular file",
                    file=str(path),
                    hint="pass the archive itself (inside a Safari .download folder, the "
                    "file in it)",
                )
            source = _Source(path, fd, st.st_size, _stamp(st))
            self._import(source, name, partial or self.partial, result)
        except XView2Error as exc:
            result.status, result.error = "failed", exc
            self.progress(Event("failed", result.name or path.name, detail=str(exc)))
        finally:
            os.close(fd)
            result.seconds = time.monotonic() - started
        return result

    # -- complete files ------------------------------------------------------------------
    def _import(self, source: _Source, name: str, partial: bool, result: ImportResult) -> None:
        entry = self.catalog.lookup(name)
        full = self.size or entry.size
        if partial and not (full is not None and source.size == full):
            self._seed(source, name, entry, result)
            return
        digests = self._hash(source, name, choose_algorithms(entry, False))
        actual = {d.algorithm: d.hexdigest() for d in digests}
        if name not in self.catalog:
            found = [e.name for e in self.catalog.values() if e.sha1 and e.sha1 == actual["sha1"]]
            if found:
                name, entry = found[0], self.catalog[found[0]]
                result.detail = f"identified as {name} by its SHA-1"
        result.name, result.size, result.digests = name, source.size, actual
        expected = entry.expected_digests()
        compared = [a for a in actual if a in expected]
        if entry.size is not None and entry.size != source.size:
            raise ContentError(
                f"holds {source.size:,} bytes but {name} has {entry.size:,}; nothing was placed",
                file=str(source.path),
                hint="if it is an unfinished download, import it with --partial",
            )
        for algo in compared:
            if actual[algo] != expected[algo]:
                raise ChecksumMismatchError(str(source.path), algo, expected[algo], actual[algo])
        recorded = self.manifest.get(name) or {}
        if (
            not self.force
            and self.manifest.is_published(name)
            and not self.manifest.is_corrupt(name)
            and recorded.get("sha1") == actual.get("sha1")
        ):
            result.status, result.detail = "skipped", "already at the destination, verified"
            self.progress(Event("skipped", name, total=source.size))
            return
        result.method = self._place(source, name, digests)
        result.verified = bool(compared)
        result.bytes_placed = source.size
        self.manifest.record(
            name,
            size=source.size,
            digests=actual,
            verified=result.verified,
            source=None,
            imported=source.path.name,
        )
        result.status = "imported"
        self.progress(Event("published", name, total=source.size, detail="imported"))

    def _hash(self, source: _Source, name: str, algos: list[str]) -> list[Digest]:
        """Hash the whole file (a first pass: it names and checks the file)."""
        digests = [Digest(a) for a in algos]
        self.progress(Event("started", name, total=source.size))
        self._pipeline(source, name, range(math.ceil(source.size / READ_PART)), READ_PART, digests)
        if _stamp(os.stat(source.path)) != source.stamp:
            raise ContentError("changed while it was read", file=str(source.path), hint="retry")
        return digests

    def _pipeline(
        self,
        source: _Source,
        name: str,
        parts: range,
        part: int,
        digests: list[Digest],
        write: Callable[[int, memoryview], None] | None = None,
        window: int = READ_WINDOW,
        shown: bool = True,
    ) -> None:
        """Read ``parts`` of the source, hash them in order, ``write`` them; ``shown``:
        report the bytes as progress (a second pass over the same file is not)."""
        pool = BufferPool(2 * window * part, page_aligned=self.store.page_aligned_buffers)

        def on_part(_: int, n: int) -> None:
            if shown:
                self.progress(Event("bytes", name, done=n, total=source.size))

        with ThreadPoolExecutor(window, thread_name_prefix="xview2-import") as executor:
            hash_in_order(
                parts,
                lambda i: min(part, source.size - i * part),
                lambda i, view: source.read(i, view, part),
                digests,
                pool,
                executor,
                window=window,
                write=write,
                on_part=on_part,
            )

    def _place(self, source: _Source, name: str, checked: list[Digest]) -> str:
        """Publish the checked file as ``name``; return how."""
        store = self.store
        if isinstance(store, LocalFiles) and self._same_device(store, source):
            method = self._link(store, source, name)
            if method:
                return method
        self._upload(source, name, checked)
        if self.move:
            source.path.unlink(missing_ok=True)
        return "copy" if isinstance(store, LocalFiles) else "upload"

    @staticmethod
    def _same_device(store: LocalFiles, source: _Source) -> bool:
        try:
            store.work.mkdir(parents=True, exist_ok=True)
            return os.stat(store.work).st_dev == source.stamp[0]
        except OSError as exc:
            raise os_error(exc, str(store.root), "create the destination folder") from None

    def _link(self, store: LocalFiles, source: _Source, name: str) -> str | None:
        """A hard link (or rename) into place; None where the file system refuses."""
        final = store.path_of(name)
        stage = store.work / IMPORT_DIR
        tmp = stage / f"{uuid.uuid4().hex}.tmp"
        try:
            stage.mkdir(parents=True, exist_ok=True)
            try:
                (os.rename if self.move else os.link)(source.path, tmp)
            except OSError as exc:
                if exc.errno in _NO_LINK:
                    return None
                raise
            if _stamp(os.stat(tmp)) != source.stamp:  # not the file that was hashed
                if self.move:
                    os.rename(tmp, source.path)
                raise ContentError(
                    "changed while it was imported", file=str(source.path), hint="retry"
                )
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise os_error(exc, name, f"place it in {store.root}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return "rename" if self.move else "link"

    def _options(self) -> TransferOptions:
        return TransferOptions(memory_budget=self.memory_budget)

    def _window(self, part: int) -> int:
        return max(1, min(8, self.memory_budget // (2 * part)))

    def _upload(self, source: _Source, name: str, checked: list[Digest]) -> None:
        """Copy through the store's upload, hashed again; publish only the checked bytes."""
        store = self.store
        upload = store.open_upload(
            name, source.size, plan_part_size(source.size, store, self._options())
        )
        part = upload.part_size
        digests = [Digest(d.algorithm) for d in checked]
        try:
            self._pipeline(
                source,
                name,
                range(math.ceil(source.size / part)),
                part,
                digests,
                write=upload.write_part,
                window=self._window(part),
                shown=False,
            )
            if [d.hexdigest() for d in digests] != [d.hexdigest() for d in checked]:
                raise ContentError(
                    "changed while it was imported; nothing was placed",
                    file=str(source.path),
                    hint="retry",
                )
            upload.publish()
        except BaseException:
            upload.abort()
            raise

    # -- partial files -------------------------------------------------------------------
    def _seed(self, source: _Source, name: str, entry: CatalogEntry, result: ImportResult) -> None:
        """Write the whole parts of a partial file into ``name``'s upload, with the
        engine's resume state after them."""
        size = self.size or entry.size
        if size is None:
            raise UsageError(
                f"the full size of {name} is not known, so its partial download cannot be resumed",
                file=str(source.path),
                hint="pass --size BYTES (the size the download page shows), or a --catalog "
                "file giving its size",
            )
        result.size = size
        if source.size > size:
            raise ContentError(
                f"holds {source.size:,} bytes, more than the {size:,} of {name}",
                file=str(source.path),
                hint="check --size and the file's name",
            )
        if (
            not self.force
            and self.manifest.is_published(name)
            and not self.manifest.is_corrupt(name)
        ):
            result.status, result.detail = "skipped", "already at the destination, verified"
            return
        store = self.store
        upload = store.open_upload(name, size, plan_part_size(size, store, self._options()))
        part = upload.part_size
        whole = source.size // part
        held = _hashed(upload)
        if held >= whole:
            upload.close()
            result.status = "skipped"
            result.detail = f"the destination already holds {held * part:,} bytes of it"
            return
        if upload.load_state() is not None or upload.done_parts():
            upload.abort()  # less than this file: start over from the file
            upload = store.open_upload(name, size, part)
        if whole == 0:
            upload.abort()
            result.status = "skipped"
            result.detail = f"shorter than one part ({part:,} bytes): nothing to keep"
            return
        digests = [Digest(a) for a in choose_algorithms(entry, False)]
        if not all(d.resumable for d in digests):
            upload.abort()
            raise XView2Error(
                "this Python's OpenSSL cannot save a digest's state", file=str(source.path)
            )
        self.progress(Event("started", name, total=size))
        try:
            self._pipeline(
                source, name, range(whole), part, digests, upload.write_part, self._window(part)
            )
            upload.checkpoint(seeded_state(size, whole, {d.algorithm: d.state() for d in digests}))
        except BaseException:
            upload.abort()
            raise
        upload.close()
        if self.move:
            source.path.unlink(missing_ok=True)
        result.status, result.method = (
            "seeded",
            "upload" if not isinstance(store, LocalFiles) else "copy",
        )
        result.bytes_placed = whole * part
        result.detail = (
            f"{whole} part(s) of {part:,} bytes kept; `xview2 download` with a fresh link "
            f"fetches the other {size - whole * part:,} bytes"
        )
        self.progress(Event("published", name, total=size, detail="seeded"))


def _hashed(upload: Upload) -> int:
    state = upload.load_state() or {}
    hashed = state.get("hashed")
    return hashed if isinstance(hashed, int) else 0
