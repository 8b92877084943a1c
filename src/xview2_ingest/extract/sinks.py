"""Where members go: a local folder or any object store, written by a pool of threads,
and published only once the whole archive is known to be good.

:class:`WriterPool` bounds the member bytes held in memory (read but not yet written) and
runs the writes on threads, so decoding (one thread, GIL released in the decoder) overlaps
with the system calls or HTTP requests of the writes.

Every member is *staged* first (:meth:`reserve`, then :meth:`write` or
:meth:`write_stream`, which return the CRC-32 of the bytes written) and *published* by
:meth:`publish` only after the whole archive stream was checked (its gzip CRC and size,
and its SHA-1 against the manifest): bytes that are not the archive's never appear under
a member's name, whatever fails and whenever.  :meth:`discard` drops staged members (a
failed archive, or an earlier copy of a member whose name comes again: the last copy
wins, as with tar).

:class:`LocalSink` serves stores with the :class:`~xview2_ingest.stores.LocalFiles`
capability (their files are plain files on this machine).  A member is staged as a hidden
``.NAME.XXXXXXXX.tmp`` in its own folder and published by a rename; an interrupted run
leaves at most such files, which the next run removes.  Every folder it creates or
enters is checked, once, to resolve inside the destination (a symbolic link already at
the destination cannot lead a member out of it), and files are opened with
``O_EXCL | O_NOFOLLOW``.  No ``fsync`` per member: GNU tar does not either; a crash
before the extraction record is written makes the next run extract the archive again.

:class:`ObjectSink` serves every other store.  A member is staged as an object under
``.xview2-staging/<archive>/`` (one PUT; ``put_stream`` for large ones) and published by
a server-side copy where the store has the :class:`~xview2_ingest.stores.Copier`
capability (else read back and written again), then the staged object is deleted.  What
that costs against writing each member once: ``docs/benchmarks-extract.md``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

from ..errors import DestinationError, XView2Error
from ..stores import Copier, LocalFiles, Store, os_error
from .errors import UnsafeMemberError
from .records import crc32
from .safety import RESERVED_DIR, STAGING_DIR, data_mode

log = logging.getLogger(__name__)

MiB = 1 << 20
_TMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_UTIME_FD = os.utime in os.supports_fd


def _top(name: str) -> str:
    head, sep, _ = name.partition("/")
    return head if sep else ""


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


@dataclass(frozen=True, slots=True)
class Staged:
    """One member copy, staged: its name and where its bytes wait (a temporary file's
    path locally, an object's name under the staging prefix elsewhere)."""

    name: str
    where: str


class _CrcReader:
    """Reads ``stream`` for a store's ``put_stream``, computing the CRC-32 on the way."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self.crc = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.crc = crc32(data, self.crc)
        return data


class WriterPool:
    """Threads running writes, with at most ``budget`` member bytes held at once."""

    def __init__(self, workers: int, budget: int):
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="xview2-extract")
        self._budget = budget
        self._held = 0
        self._cond = threading.Condition()
        self.error: BaseException | None = None

    def acquire(self, nbytes: int) -> int:
        """Reserve room for ``nbytes`` (blocks while the pool is full); the amount held."""
        amount = min(max(nbytes, 4096), self._budget)
        with self._cond:
            while self._held and self._held + amount > self._budget and self.error is None:
                self._cond.wait()
            if self.error is not None:
                raise self.error
            self._held += amount
        return amount

    def release(self, amount: int) -> None:
        """Give back room reserved by :meth:`acquire` for a write that will not happen
        (reading the member failed), so that :meth:`drain` does not wait for it."""
        with self._cond:
            self._held -= amount
            self._cond.notify_all()

    def submit(self, amount: int, fn: Callable[..., Any], *args: Any) -> None:
        future = self._executor.submit(fn, *args)
        future.add_done_callback(lambda f: self._release(f, amount))

    def _release(self, future: Future[Any], amount: int) -> None:
        exc = None if future.cancelled() else future.exception()
        with self._cond:
            self._held -= amount
            if exc is not None and self.error is None:
                self.error = exc
            self._cond.notify_all()

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def drain(self) -> None:
        """Wait for every write; raise the first failure."""
        with self._cond:
            while self._held:
                self._cond.wait()
        self.check()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class LocalSink:
    """Members as files under the local store's root."""

    def __init__(self, root: os.PathLike[str] | str, url: str, archive: str):
        self.url = url
        self.archive = archive
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, url, "create the destination folder") from None
        self.root = os.path.realpath(root)
        self._dirs: set[str] = set()
        self.created_dirs: list[str] = []
        self._counter = 0
        self._lock = threading.Lock()

    def _refuse(self, name: str, path: str) -> UnsafeMemberError:
        return UnsafeMemberError(
            self.archive, name, f"the folder {path!r} leads outside the destination"
        )

    def ensure_dir(self, rel: str, member: str) -> str:
        """The absolute path of folder ``rel``, created if needed and checked to resolve
        inside the destination (PEP 706: realpath within the destination)."""
        if rel in self._dirs:
            return os.path.join(self.root, rel) if rel else self.root
        path = self.root
        so_far = ""
        for part in rel.split("/") if rel else []:
            so_far = f"{so_far}/{part}" if so_far else part
            path = os.path.join(path, part)
            if so_far in self._dirs:
                continue
            try:
                os.mkdir(path)
                self.created_dirs.append(so_far)
            except FileExistsError:
                pass
            except OSError as exc:
                raise os_error(exc, so_far, f"create the folder in {self.url}") from None
            real = os.path.realpath(path)
            if real != self.root and not real.startswith(self.root + os.sep):
                raise self._refuse(member, so_far)
            if not os.path.isdir(real):
                raise DestinationError(f"{so_far!r} exists and is not a folder", file=member)
            self._dirs.add(so_far)
        return path

    def reserve(self, name: str) -> Staged:
        """Main-thread part of staging ``name``: its folder (created and checked) and a
        temporary name in it."""
        folder = self.ensure_dir(name.rpartition("/")[0], name)
        with self._lock:
            self._counter += 1
            n = self._counter
        base = name.rpartition("/")[2]
        tmp = f".{base}.{(os.getpid() * 65599 + n) & 0xFFFFFFFF:08x}.tmp"
        return Staged(name, os.path.join(folder, tmp))

    def _staging(self, staged: Staged, mode: int, mtime: float, fill: Callable[[int], int]) -> int:
        """Create the temporary file, let ``fill`` write it (returning the CRC-32), set its
        time; on any error the file is removed."""
        try:
            fd = os.open(staged.where, _OPEN_FLAGS, data_mode(mode))
            try:
                crc = fill(fd)
                if _UTIME_FD:
                    os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
            if not _UTIME_FD:
                os.utime(staged.where, (mtime, mtime))
            return crc
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(staged.where)
            raise os_error(exc, staged.name, f"write into {self.url}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(staged.where)
            raise

    def write(self, staged: Staged, data: bytes, mode: int, mtime: float) -> int:
        def fill(fd: int) -> int:
            _write_all(fd, memoryview(data))
            return crc32(data, 0)

        return self._staging(staged, mode, mtime, fill)

    def write_stream(
        self, staged: Staged, stream: IO[bytes], size: int, mode: int, mtime: float
    ) -> int:
        def fill(fd: int) -> int:
            remaining, crc = size, 0
            while remaining:
                chunk = stream.read(min(remaining, 8 * MiB))
                if not chunk:
                    raise DestinationError("the archive ended inside this member", file=staged.name)
                _write_all(fd, memoryview(chunk))
                crc = crc32(chunk, crc)
                remaining -= len(chunk)
            return crc

        return self._staging(staged, mode, mtime, fill)

    def publish(self, staged: Iterable[Staged]) -> None:
        """Rename every staged member into place (each rename is atomic)."""
        for item in staged:
            final = os.path.join(os.path.dirname(item.where), item.name.rpartition("/")[2])
            try:
                os.replace(item.where, final)
            except OSError as exc:
                raise os_error(exc, item.name, f"publish into {self.url}") from None

    def discard(self, staged: Iterable[Staged]) -> None:
        for item in staged:
            with contextlib.suppress(OSError):
                os.unlink(item.where)

    def forget_created_dirs(self) -> None:
        """Remove the folders this run created that are still empty."""
        for rel in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(self.root, rel))

    def make_dir(self, name: str) -> None:
        self.ensure_dir(name, name)

    def purge(self, prefix: str) -> None:
        """Remove what an interrupted run left staged under top-level folder ``prefix``."""
        self.existing(prefix)

    def existing(self, prefix: str) -> dict[str, int]:
        """Regular files (not links) under top-level folder ``prefix`` (or at the root, for
        ""), with sizes; temporary files of an interrupted run are removed on the way."""
        out: dict[str, int] = {}
        if not prefix:
            with contextlib.suppress(OSError), os.scandir(self.root) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False) and not _TMP.match(entry.name):
                        out[entry.name] = entry.stat(follow_symlinks=False).st_size
            return out
        if prefix in (RESERVED_DIR, STAGING_DIR):
            return out
        stack = [(os.path.join(self.root, prefix), prefix)]
        while stack:
            path, rel = stack.pop()
            try:
                with os.scandir(path) as it:
                    for entry in it:
                        child = f"{rel}/{entry.name}"
                        if entry.is_dir(follow_symlinks=False):
                            stack.append((entry.path, child))
                        elif entry.is_file(follow_symlinks=False):
                            if _TMP.match(entry.name):
                                with contextlib.suppress(OSError):
                                    os.unlink(entry.path)
                                continue
                            out[child] = entry.stat(follow_symlinks=False).st_size
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise os_error(exc, rel, f"list {self.url}") from None
        return out

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.root, name))


class ObjectSink:
    """Members as objects of any store (S3): staged under ``.xview2-staging/<archive>/``,
    published by a copy."""

    def __init__(self, store: Store, archive: str, workers: int = 8):
        self.url = store.url
        self.archive = archive
        self._store = store
        self._workers = max(1, workers)
        self._prefix = f"{STAGING_DIR}/{archive}/"
        self._counter = 0
        self._purged = False
        self.created_dirs: list[str] = []

    def reserve(self, name: str) -> Staged:
        self._counter += 1
        return Staged(name, f"{self._prefix}{self._counter:08d}")

    def write(self, staged: Staged, data: bytes, mode: int, mtime: float) -> int:
        self._store.write_bytes(staged.where, data)
        return crc32(data, 0)

    def write_stream(
        self, staged: Staged, stream: IO[bytes], size: int, mode: int, mtime: float
    ) -> int:
        reader = _CrcReader(stream)
        self._store.put_stream(staged.where, reader, size)  # type: ignore[arg-type]
        return reader.crc

    def _each(self, fn: Callable[[Any], None], items: Iterable[Any]) -> None:
        with ThreadPoolExecutor(self._workers, thread_name_prefix="xview2-publish") as pool:
            for future in [pool.submit(fn, item) for item in items]:
                future.result()

    def _publish_one(self, item: Staged) -> None:
        if isinstance(self._store, Copier):
            self._store.copy(item.where, item.name)
            return
        size = self._store.size_of(item.where)
        if size is None:
            raise DestinationError(f"the staged copy {item.where} vanished", file=item.name)
        with self._store.open_read(item.where) as fh:
            self._store.put_stream(item.name, fh, size)

    def publish(self, staged: Iterable[Staged]) -> None:
        """Copy every staged member to its name, then delete the staged objects."""
        items = list(staged)
        self._each(self._publish_one, items)
        self.discard(items)

    def discard(self, staged: Iterable[Staged]) -> None:
        def delete(item: Staged) -> None:
            with contextlib.suppress(XView2Error):
                self._store.delete(item.where)

        self._each(delete, staged)

    def forget_created_dirs(self) -> None:
        """Object stores have no folders."""

    def make_dir(self, name: str) -> None:
        """Object stores have no folders."""

    def purge(self, prefix: str) -> None:
        """Delete the staged objects of this archive an interrupted run left (once)."""
        if self._purged:
            return
        self._purged = True
        leftovers = [Staged("", n) for n, _ in self._list(self._prefix)]
        if leftovers:
            log.info("removing %d staged object(s) of an interrupted run", len(leftovers))
            self.discard(leftovers)

    def _list(self, prefix: str) -> list[tuple[str, int]]:
        try:
            return list(self._store.list_files(prefix))
        except XView2Error:
            raise
        except Exception as exc:
            raise DestinationError(f"cannot list {self.url}: {exc}", file=prefix) from None

    def existing(self, prefix: str) -> dict[str, int]:
        if prefix:
            return dict(self._list(prefix + "/"))
        return {n: s for n, s in self._list("") if "/" not in n}

    def remove(self, names: Iterable[str]) -> None:
        def delete(name: str) -> None:
            with contextlib.suppress(XView2Error):
                self._store.delete(name)

        self._each(delete, names)


Sink = LocalSink | ObjectSink


def sink_for(store: Store, archive: str, workers: int = 8) -> Sink:
    """Plain files for a store whose files are local (LocalFiles), objects for any other."""
    if isinstance(store, LocalFiles):
        return LocalSink(store.root, store.url, archive)
    return ObjectSink(store, archive, workers)


def missing_members(sink: Sink, members: dict[str, tuple[int, int]]) -> list[str]:
    """Names of ``members`` not present at the destination with their recorded size."""
    by_top: dict[str, list[str]] = {}
    for name in members:
        by_top.setdefault(_top(name), []).append(name)
    missing = []
    for top, names in by_top.items():
        present = sink.existing(top)
        missing += [n for n in names if present.get(n) != members[n][0]]
    return missing


__all__ = [
    "LocalSink",
    "ObjectSink",
    "Sink",
    "Staged",
    "WriterPool",
    "missing_members",
    "sink_for",
]
