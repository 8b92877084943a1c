"""A local folder.  Parts are written at their offsets into ``.xview2/partial/NAME.part``
(space reserved up front, so a full disk is found before the download, not after); a
sidecar ``NAME.state.json`` records the parts done and the engine's digest state.
Publishing is ``fsync`` and then ``os.replace`` into the final name.

Parts go to the disk with direct I/O (``O_DIRECT``) where the file system takes it.  An
archive is written once and read once, so the page cache gains nothing from it, and
copying it through the cache is the largest cost of a download on a small machine (the
figures are in ``docs/benchmarks.md``, design notes).  Anything direct I/O refuses (a
file system without it, a buffer or length that is not aligned) is written through the
page cache instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..errors import DestinationError
from ..transfer.resume_state import InvalidState, LocalRecord, local_record, read_file
from .base import PendingUpload
from .errors import os_error

log = logging.getLogger(__name__)

WORK_DIR = ".xview2"
MiB = 1 << 20
SYNC_INTERVAL = 1.0
"""Seconds between data syncs: what a power cut can cost, at most."""
DIRECT_ALIGN = 4096
"""Offsets and lengths written with direct I/O are multiples of this."""


@functools.cache
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def load_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if it is missing, unreadable or not an object."""
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _runs(indices: set[int]) -> list[list[int]]:
    """{0,1,2,5,6} -> [[0, 3], [5, 7]]: a compact journal of the parts done."""
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def _unruns(runs: object, limit: int = 10_000_000) -> set[int]:
    """The parts of a journal's runs; empty when the runs are malformed or absurd."""
    if not isinstance(runs, list):
        return set()
    valid = [
        r
        for r in runs
        if isinstance(r, list) and len(r) == 2 and all(type(x) is int and x >= 0 for x in r)
    ]
    if len(valid) != len(runs) or sum(max(0, b - a) for a, b in valid) > limit:
        return set()
    return {i for start, stop in valid for i in range(start, stop)}


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, *, sync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LocalUpload:
    def __init__(
        self, store: LocalStore, name: str, size: int, part_size: int, direct: bool = True
    ):
        self.name, self.size, self.part_size = name, size, part_size
        self._final = store.path_of(name)
        base = store.work / "partial" / name.replace("/", "%2F")
        self._data = base.with_name(base.name + ".part")
        self._state_path = base.with_name(base.name + ".state.json")
        self._durable_path = base.with_name(base.name + ".durable.json")
        self._last_sync = 0.0
        self._lock = threading.Lock()
        self._done: set[int] = set()
        self._partial: dict[int, int] = {}  # index -> bytes kept of a part not finished
        self._served: set[int] = set()  # parts read back whole since they were written
        self._engine_state: dict[str, Any] | None = None
        try:
            self._data.parent.mkdir(parents=True, exist_ok=True)
            previous = self._read_state(store.max_parts)
            if previous and self._data.exists() and self._data.stat().st_size == size:
                self.part_size = previous.part_size
                self._done = previous.done
                self._partial = previous.partial
                self._engine_state = previous.engine
                self._fd = os.open(self._data, os.O_RDWR)
            else:
                self._state_path.unlink(missing_ok=True)
                self._durable_path.unlink(missing_ok=True)
                self._fd = os.open(self._data, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    self._reserve(size)
                except OSError:
                    os.close(self._fd)
                    self._data.unlink(missing_ok=True)
                    raise
        except OSError as exc:
            raise os_error(exc, name, f"create a temporary file in {store.url}") from None
        self._direct: int | None = None
        self._direct_ok = True
        if direct and hasattr(os, "O_DIRECT") and self.part_size % DIRECT_ALIGN == 0:
            try:
                self._direct = os.open(self._data, os.O_RDWR | os.O_DIRECT)
            except OSError as exc:
                log.debug("%s: no direct I/O here (%s); writing through the cache", name, exc)

    def _reserve(self, size: int) -> None:
        try:
            os.posix_fallocate(self._fd, 0, size)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                os.ftruncate(self._fd, size)
            else:
                raise

    def _read_state(self, max_parts: int) -> LocalRecord | None:
        """The newest trustworthy journal: the fast one if written in this boot, else the
        durable one.  A journal that fails the checks is dropped with a warning."""
        for path in (self._state_path, self._durable_path):
            try:
                raw = read_file(path)
                record = (
                    None if raw is None else local_record(raw, size=self.size, max_parts=max_parts)
                )
            except InvalidState as exc:
                log.warning("%s: ignoring the resume journal %s: %s", self.name, path, exc)
                continue
            if record is None or (path == self._state_path and record.boot != _boot_id()):
                continue
            return record
        return None

    def _part_len(self, index: int) -> int:
        return min(self.part_size, self.size - index * self.part_size)

    def done_parts(self) -> set[int]:
        with self._lock:
            return set(self._done)

    def write_part(self, index: int, data: memoryview) -> None:
        offset = index * self.part_size
        try:
            if self._direct_ok and self._direct is not None:
                data, offset = self._write_direct(data, offset)
            while data:
                written = os.pwrite(self._fd, data, offset)
                data, offset = data[written:], offset + written
        except OSError as exc:
            raise os_error(exc, self.name, "write") from None
        with self._lock:
            self._done.add(index)
            self._partial.pop(index, None)
            self._served.discard(index)

    def _write_direct(self, data: memoryview, offset: int) -> tuple[memoryview, int]:
        """Write the aligned head of ``data`` with direct I/O; return what is left."""
        fd, end, done = self._direct, len(data) - len(data) % DIRECT_ALIGN, 0
        try:
            while fd is not None and self._direct_ok and done < end:
                done += os.pwrite(fd, data[done:end], offset + done)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            log.debug("%s: direct I/O refused (%s); writing through the cache", self.name, exc)
            self._direct_ok = False  # the descriptor stays open until no part can use it
        return data[done:], offset + done

    def _read_direct(self, into: memoryview, offset: int) -> tuple[memoryview, int]:
        fd, end, done = self._direct, len(into) - len(into) % DIRECT_ALIGN, 0
        try:
            while fd is not None and self._direct_ok and done < end:
                n = os.preadv(fd, [into[done:end]], offset + done)
                if n <= 0:
                    break
                done += n
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            log.debug("%s: direct read refused (%s); reading through the cache", self.name, exc)
        return into[done:], offset + done

    def _close_direct(self) -> None:
        fd, self._direct = self._direct, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def has_part(self, index: int) -> bool:
        with self._lock:
            return index in self._done

    def read_part(self, index: int, into: memoryview) -> bool:
        if not self._pread(index, into):
            return False
        if into.nbytes == self._part_len(index):
            with self._lock:
                self._served.add(index)
        return True

    def _pread(self, index: int, into: memoryview) -> bool:
        """Read back what this upload holds of part ``index``: the aligned head with
        direct I/O when the buffer allows it (no page cache filled, no copy), the rest
        through the cache."""
        offset, view = index * self.part_size, into
        try:
            view, offset = self._read_direct(view, offset)
            while view:
                n = os.preadv(self._fd, [view], offset)
                if n <= 0:
                    return False
                view, offset = view[n:], offset + n
        except OSError as exc:
            log.warning("%s: cannot read back part %d: %s", self.name, index, exc)
            return False
        return True

    def confirm_part(self, index: int, data: memoryview) -> bool:
        """The part on disk is ``data`` if it was just read into it whole (only this run
        writes here: see :meth:`LocalStore.exclusive`), or compares equal; else rewrite."""
        with self._lock:
            if index in self._served and data.nbytes == self._part_len(index):
                return True
        on_disk = bytearray(data.nbytes)
        if self._pread(index, memoryview(on_disk)) and on_disk == data:
            return True
        self.write_part(index, data)
        return False

    def keep_partial(self, index: int, data: memoryview) -> int:
        """Write the bytes of an unfinished part where they belong and journal how many."""
        with self._lock:
            if index in self._done:
                return data.nbytes
        try:
            view, offset = data, index * self.part_size
            while view:
                written = os.pwrite(self._fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:
            log.warning("%s: cannot keep the bytes of part %d: %s", self.name, index, exc)
            return 0
        with self._lock:
            self._partial[index] = max(self._partial.get(index, 0), data.nbytes)
        return data.nbytes

    def kept_parts(self) -> dict[int, int]:
        with self._lock:
            kept = {i: self._part_len(i) for i in self._done}
            kept.update(self._partial)
            return kept

    def load_state(self) -> dict[str, Any] | None:
        return self._engine_state

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Journal the parts done and the engine's state, cheaply, after every part.

        The fast journal is written each time without syncing; it survives a killed
        process (the page cache does) but not a reboot.  At most once a second the data
        is ``fdatasync``-ed and the same record written durably.  The fast journal names
        the boot it was written in; after a reboot only the durable one is trusted.
        """
        with self._lock:
            done = _runs(self._done)
            partial = {str(i): n for i, n in self._partial.items()}
        record = {
            "size": self.size,
            "part_size": self.part_size,
            "done": done,
            "partial": partial,
            "engine": state,
            "boot": _boot_id(),
        }
        try:
            now = time.monotonic()
            if now - self._last_sync >= SYNC_INTERVAL:
                os.fdatasync(self._fd)
                atomic_write(self._durable_path, json.dumps(record).encode(), sync=True)
                self._last_sync = now
            atomic_write(self._state_path, json.dumps(record).encode(), sync=False)
        except OSError as exc:
            raise os_error(exc, self.name, "save resume state") from None

    def publish(self) -> None:
        self._close_direct()
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._data, self._final)
            _fsync_dir(self._final.parent)
            self._state_path.unlink(missing_ok=True)
            self._durable_path.unlink(missing_ok=True)
        except OSError as exc:
            raise os_error(exc, self.name, "publish") from None

    def abort(self) -> None:
        self._close_direct()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        for path in (self._data, self._state_path, self._durable_path):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Leave the partial file and its state for a later run."""
        self._close_direct()
        with contextlib.suppress(OSError):
            os.close(self._fd)


class LocalStore:
    min_part_size = 256 * 1024
    default_part_size = 4 * MiB
    max_parts = 1_000_000
    # Parts not yet journaled are re-fetched after a kill; 0.1 s of them is a small price
    # next to what a journal write per part costs at disk speed (docs/benchmarks.md).
    checkpoint_interval = 0.1
    page_aligned_buffers = True  # for O_DIRECT

    def __init__(self, root: str | os.PathLike[str], *, direct_io: bool = True):
        """``direct_io=False`` writes downloads through the page cache."""
        self.direct_io = direct_io
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)
        self.work = self.root / WORK_DIR

    def path_of(self, name: str) -> Path:
        """The path of ``name``, refused unless it is a file under :attr:`root`.

        Resolved, so ``..`` and symbolic links that lead outside are caught; an empty
        name, one that is the root itself, or one with a NUL byte is refused too.
        """
        root = self.root.resolve()
        try:
            path = (self.root / name).resolve() if name and "\x00" not in name else root
        except (OSError, ValueError):
            path = root
        if path == root or not path.is_relative_to(root):
            raise DestinationError(
                f"refusing the name {name[:200]!r}: it does not name a file inside {self.url}",
                file=name,
                hint="names must stay under the destination folder",
            )
        return path

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, self.url, "create the destination folder") from None

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold ``.xview2/lock`` (``flock``) while downloading: the kernel releases it when
        the process ends, however it ends.  The file names the holder, for the message."""
        self._ensure_root()
        path = self.work / "lock"
        try:
            self.work.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_error(exc, str(path), f"lock {self.url}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "?"
                raise DestinationError(
                    f"another xview2 run ({holder}) is downloading into {self.url}",
                    hint="wait for it to finish or stop it, then run again",
                ) from None
            since = time.strftime("%H:%M:%S")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, since {since}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def open_upload(self, name: str, size: int, part_size: int) -> LocalUpload:
        self._ensure_root()
        return LocalUpload(self, name, size, part_size, self.direct_io)

    def size_of(self, name: str) -> int | None:
        try:
            return self.path_of(name).stat().st_size
        except OSError:
            return None

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return self.path_of(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, name, f"read from {self.url}") from None

    def write_bytes(self, name: str, data: bytes) -> None:
        self._ensure_root()
        path = self.path_of(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            raise os_error(exc, name, f"write to {self.url}") from None

    def open_read(self, name: str) -> IO[bytes]:
        try:
            return open(self.path_of(name), "rb")
        except OSError as exc:
            raise os_error(exc, name, f"read from {self.url}") from None

    def put_stream(self, name: str, stream: IO[bytes], size: int) -> None:
        path = self.path_of(name)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                remaining = size
                while remaining:
                    chunk = stream.read(min(remaining, 4 * MiB))
                    if not chunk:
                        raise DestinationError("source ended early", file=name)
                    out.write(chunk)
                    remaining -= len(chunk)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise os_error(exc, name, f"write to {self.url}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path_of(name).unlink()

    def list_files(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != WORK_DIR]
            for fname in filenames:
                full = Path(dirpath) / fname
                if fname.startswith(".") and fname.endswith(".tmp"):
                    continue
                yield full.relative_to(self.root).as_posix(), full.stat().st_size

    def pending_uploads(self) -> list[PendingUpload]:
        out = []
        partial = self.work / "partial"
        for data in sorted(partial.glob("*.part")) if partial.exists() else []:
            base = data.name.removesuffix(".part")
            state = (
                load_json(data.with_name(base + ".state.json"))
                or load_json(data.with_name(base + ".durable.json"))
                or {}
            )
            done = _unruns(state.get("done", []))
            part_size, size = state.get("part_size", 0), state.get("size", 0)
            bytes_done = sum(min(part_size, size - i * part_size) for i in done)
            started = datetime.fromtimestamp(data.stat().st_ctime, UTC).isoformat()
            out.append(
                PendingUpload(
                    base.replace("%2F", "/"), started, len(done), bytes_done, "partial file"
                )
            )
        return out

    def abort_pending(
        self, name: str | None = None, *, dry_run: bool = False
    ) -> list[PendingUpload]:
        """Delete the partial files (all, or of ``name``) and their resume state; return
        them.  ``dry_run`` only lists them.  Only this tool's own folder is looked at."""
        partial = self.work / "partial"
        done = []
        for pending in self.pending_uploads():
            if name is not None and pending.name != name:
                continue
            if not dry_run:
                base = partial / pending.name.replace("/", "%2F")
                for suffix in (".part", ".state.json", ".durable.json"):
                    base.with_name(base.name + suffix).unlink(missing_ok=True)
            done.append(pending)
        return done

    def open_read_at(self, name: str, offset: int) -> IO[bytes]:
        """Like :meth:`open_read`, starting ``offset`` bytes into the file."""
        fh = self.open_read(name)
        fh.seek(offset)
        return fh

    def read_into(self, name: str, offset: int, into: memoryview) -> None:
        """Fill ``into`` with the bytes of ``name`` from ``offset`` (``preadv``)."""
        try:
            fd = os.open(self.path_of(name), os.O_RDONLY)
            try:
                view = into
                while view:
                    n = os.preadv(fd, [view], offset)
                    if n <= 0:
                        raise DestinationError(f"ends before byte {offset:,}", file=name)
                    view, offset = view[n:], offset + n
            finally:
                os.close(fd)
        except OSError as exc:
            raise os_error(exc, name, f"read from {self.url}") from None

    def compose(self, name: str, sources: tuple[str, ...], *, workers: int = 8) -> int:
        """Publish the concatenation of the published files ``sources`` as ``name``.

        Copies in the kernel (``copy_file_range``, which can share blocks on file systems
        that support it) into a temporary file, ``fsync``-s it and renames it into place;
        returns the size.  ``workers`` is accepted for symmetry with the S3 store.
        """
        self._ensure_root()
        final = self.path_of(name)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        total = 0
        try:
            with open(tmp, "wb", buffering=0) as out:
                for source in sources:
                    with open(self.path_of(source), "rb", buffering=0) as src:
                        total += self._append_file(src.fileno(), out.fileno())
                os.fsync(out.fileno())
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise os_error(exc, name, "assemble") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return total

    def copy(self, source: str, target: str) -> None:
        """Publish ``source`` under ``target`` as a hard link (no byte copied), or as a
        copy where the file system refuses links; atomically replaces ``target``."""
        src, final = self.path_of(source), self.path_of(target)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(src, tmp)
            os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise os_error(exc, target, f"copy {source} in") from None

    @staticmethod
    def _append_file(src: int, out: int) -> int:
        """Copy all of file descriptor ``src`` to ``out`` at their positions; bytes copied."""
        size = os.fstat(src).st_size
        copied = 0
        fast = hasattr(os, "copy_file_range")
        while copied < size:
            if fast:
                try:
                    n = os.copy_file_range(src, out, size - copied)
                except OSError as exc:
                    if exc.errno not in (
                        errno.EXDEV,
                        errno.ENOSYS,
                        errno.EINVAL,
                        errno.EOPNOTSUPP,
                        errno.EBADF,
                    ):
                        raise
                    fast = False
                    continue
            else:
                chunk = os.read(src, min(size - copied, 8 * MiB))
                n = len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            if n == 0:
                break
            copied += n
        return copied
