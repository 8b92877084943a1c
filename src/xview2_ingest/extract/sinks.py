"""Where members go: a local folder or any object store, written by a pool of threads.

:class:`WriterPool` bounds the member bytes held in memory (read but not yet written) and
runs the writes on threads, so decoding (one thread, GIL released in the decoder) overlaps
with the system calls or HTTP requests of the writes.

:class:`LocalSink` serves stores with the :class:`~xview2_ingest.stores.LocalFiles`
capability (their files are plain files on this machine).  It writes each member to a
temporary name in its folder and renames it into place, so a member never appears half
written under its name (an interrupted run leaves at most hidden ``.NAME.XXXXXXXX.tmp``
files, which the next run removes).  Every folder it creates or enters is checked, once,
to resolve inside the destination (a symbolic link already at the destination cannot lead
a member out of it), and files are opened with ``O_EXCL | O_NOFOLLOW``.  No ``fsync`` per
member: GNU tar does not either, and a member cut short by a crash has the wrong size, so
the next run writes it again.

:class:`ObjectSink` serves every other store, through its own ``write_bytes`` (one PUT per
member; objects appear atomically) and ``put_stream`` for large members; object stores
have no folders.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

from ..errors import DestinationError, XView2Error
from ..stores import LocalFiles, Store, os_error
from .errors import UnsafeMemberError
from .safety import RESERVED_DIR, data_mode

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

    def prepare(self, name: str) -> Any:
        """Main-thread part of a write: the folder of ``name`` (created and checked)."""
        return self.ensure_dir(name.rpartition("/")[0], name)

    def _tmp(self, folder: str, base: str) -> str:
        with self._lock:
            self._counter += 1
            n = self._counter
        return os.path.join(folder, f".{base}.{(os.getpid() * 65599 + n) & 0xFFFFFFFF:08x}.tmp")

    @contextlib.contextmanager
    def _publishing(self, name: str, folder: str, mode: int, mtime: float) -> Iterator[int]:
        """A descriptor on a temporary file that becomes member ``name`` when the block
        ends; on any error the temporary file is removed instead."""
        base = name.rpartition("/")[2]
        tmp = self._tmp(folder, base)
        try:
            fd = os.open(tmp, _OPEN_FLAGS, data_mode(mode))
            try:
                yield fd
                if _UTIME_FD:
                    os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)
            if not _UTIME_FD:
                os.utime(tmp, (mtime, mtime))
            os.replace(tmp, os.path.join(folder, base))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise os_error(exc, name, f"write into {self.url}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def write(self, name: str, folder: str, data: bytes, mode: int, mtime: float) -> None:
        with self._publishing(name, folder, mode, mtime) as fd:
            _write_all(fd, memoryview(data))

    def write_stream(
        self, name: str, folder: str, stream: IO[bytes], size: int, mode: int, mtime: float
    ) -> None:
        with self._publishing(name, folder, mode, mtime) as fd:
            remaining = size
            while remaining:
                chunk = stream.read(min(remaining, 8 * MiB))
                if not chunk:
                    raise DestinationError("the archive ended inside this member", file=name)
                _write_all(fd, memoryview(chunk))
                remaining -= len(chunk)

    def make_dir(self, name: str) -> None:
        self.ensure_dir(name, name)

    def existing(self, prefix: str) -> dict[str, int]:
        """Regular files (not links) under top-level folder ``prefix`` (or at the root, for
        ""), with sizes; temporary files of an interrupted run are removed on the way."""
        out: dict[str, int] = {}
        if not prefix:
            with contextlib.suppress(OSError), os.scandir(self.root) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):
                        out[entry.name] = entry.stat(follow_symlinks=False).st_size
            return out
        if prefix == RESERVED_DIR:
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
        for rel in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(self.root, rel))


class ObjectSink:
    """Members as objects of any store (S3): one PUT each, multipart for large ones."""

    def __init__(self, store: Store, archive: str):
        self.url = store.url
        self.archive = archive
        self._store = store
        self.created_dirs: list[str] = []

    def prepare(self, name: str) -> Any:
        return None

    def write(self, name: str, folder: Any, data: bytes, mode: int, mtime: float) -> None:
        self._store.write_bytes(name, data)

    def write_stream(
        self, name: str, folder: Any, stream: IO[bytes], size: int, mode: int, mtime: float
    ) -> None:
        self._store.put_stream(name, stream, size)

    def make_dir(self, name: str) -> None:
        """Object stores have no folders."""

    def existing(self, prefix: str) -> dict[str, int]:
        try:
            if prefix:
                return dict(self._store.list_files(prefix + "/"))
            return {n: s for n, s in self._store.list_files("") if "/" not in n}
        except XView2Error:
            raise
        except Exception as exc:
            raise DestinationError(f"cannot list {self.url}: {exc}", file=prefix) from None

    def remove(self, names: Iterable[str]) -> None:
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(self._store.delete, n) for n in names]:
                with contextlib.suppress(XView2Error):
                    future.result()


Sink = LocalSink | ObjectSink


def sink_for(store: Store, archive: str) -> Sink:
    """Plain files for a store whose files are local (LocalFiles), objects for any other."""
    if isinstance(store, LocalFiles):
        return LocalSink(store.root, store.url, archive)
    return ObjectSink(store, archive)


def missing_members(sink: Sink, members: dict[str, int]) -> list[str]:
    """Names of ``members`` not present at the destination with their recorded size."""
    by_top: dict[str, list[str]] = {}
    for name in members:
        by_top.setdefault(_top(name), []).append(name)
    missing = []
    for top, names in by_top.items():
        present = sink.existing(top)
        missing += [n for n in names if present.get(n) != members[n]]
    return missing


__all__ = ["LocalSink", "ObjectSink", "Sink", "WriterPool", "missing_members", "sink_for"]
