"""The transfer engine: every link at once, each file in parallel ranges, verified in order.

Path of the bytes for one file::

    probe ─► plan parts ─► open (or resume) the store's upload
       ─► for each part, in order, as memory allows: fetch its range into a pooled buffer
          (N connections per file, a global cap) ─► store.write_part(i)
       ─► digest the parts strictly in order (the reorder window is the buffer pool)
       ─► checkpoint {digest state, parts hashed} through the upload, written off the
          digest's path by one writer per file that always takes the newest state
       ─► all parts hashed: compare with the catalog ─► publish, or abort on mismatch

Memory is bounded by :class:`BufferPool`: a part holds its buffer from the moment its
fetch starts until the digest has consumed it, and no fetch starts without one.  Parts are
started in index order, so the lowest unhashed part is always in flight and the pool can
never deadlock.  The budget does not grow with file size; the part size is chosen so the
budget holds a part for every connection plus a small reorder window (see
:func:`plan_part_size`), and grows only to stay under the store's part-count limit.
"""

from __future__ import annotations

import logging
import math
import mmap
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Catalog, CatalogEntry
from ..errors import (
    ChecksumMismatchError,
    ContentError,
    TransferInterrupted,
    XView2Error,
)
from ..events import Event, ProgressCallback, no_progress
from ..links import Link
from ..manifest import Manifest
from ..reports import DownloadReport, FileResult, failure_of
from ..settings import DEFAULT_MEMORY_MB
from ..stores import Store, Upload
from .digest import Digest
from .http import HttpClient, Remote, RetryPolicy, SequentialStream

log = logging.getLogger(__name__)

MiB = 1 << 20
ALIGN = 64 * 1024
"""Part sizes are multiples of this (which direct I/O needs)."""


@dataclass(frozen=True)
class TransferOptions:
    connections: int = 8
    """Parallel ranged connections per file."""
    max_connections: int = 32
    """Cap on connections across all files."""
    memory_budget: int = DEFAULT_MEMORY_MB * MiB
    """Bytes of part buffers in flight across all files: the run's memory bound."""
    part_size: int | None = None
    """Bytes per part; default: the store's default, grown to stay under its part limit."""
    all_digests: bool = False
    """Compute every digest the catalog knows, not just the strongest one."""
    checkpoint_interval: float | None = None
    """Seconds between resume checkpoints (0: after every part); default: the store's."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    force: bool = False
    """Download again even when the destination already holds the verified file."""


Buffer = mmap.mmap | bytearray


class BufferPool:
    """Part buffers under a byte budget, reused between parts.

    With ``page_aligned`` the buffers are anonymous memory maps, which a local store can
    hand to the disk with direct I/O.  Otherwise they are bytearrays, which an S3 store
    sends whole: botocore takes a bytearray as a request body (it refuses a memoryview)
    and urllib3 passes it to one ``sendall``, with no copy and no Python loop per block.
    """

    def __init__(self, budget: int, *, page_aligned: bool = True):
        self.budget = budget
        self.page_aligned = page_aligned
        self._cond = threading.Condition()
        self._used = 0
        self._cached: list[Buffer] = []
        self.peak = 0

    def _cached_bytes(self) -> int:
        return sum(len(b) for b in self._cached)

    def acquire(self, size: int, cancelled: Callable[[], bool]) -> Buffer | None:
        with self._cond:
            while self._used and self._used + size > self.budget:
                if cancelled():
                    return None
                self._cond.wait(0.2)
            for i, buf in enumerate(self._cached):
                if len(buf) == size:
                    self._cached.pop(i)
                    break
            else:
                while self._cached and self._used + self._cached_bytes() + size > self.budget:
                    self._cached.pop()
                buf = mmap.mmap(-1, size) if self.page_aligned else bytearray(size)
            self._used += size
            self.peak = max(self.peak, self._used)
            return buf

    def release(self, buf: Buffer) -> None:
        with self._cond:
            self._used -= len(buf)
            self._cached.append(buf)
            self._cond.notify_all()


def plan_part_size(size: int, store: Store, options: TransferOptions | None = None) -> int:
    """Bytes per part of a new upload.

    The requested size if given, else the store's default, shrunk so that the memory
    budget holds a buffer for every connection plus a reorder window of a quarter as many
    (at least 2): fewer, larger parts cost fewer requests, but a part that waits for a
    buffer is a connection standing idle.  Never below the store's minimum, and grown to
    stay under its part-count limit.
    """
    options = options or TransferOptions()
    part = options.part_size
    if not part:
        buffers = options.connections + max(2, options.connections // 4)
        part = min(store.default_part_size, options.memory_budget // buffers // ALIGN * ALIGN)
    need = math.ceil(size / store.max_parts) if size else 0
    part = max(store.min_part_size, part, need)
    return math.ceil(part / ALIGN) * ALIGN


def choose_algorithms(entry: CatalogEntry, all_digests: bool) -> list[str]:
    """SHA-1 always (it is what xview2.org publishes); MD5 only when it is all we have."""
    if all_digests:
        return ["sha1", "md5"]
    if entry.md5 and not entry.sha1:
        return ["md5", "sha1"]
    return ["sha1"]


class FileTransfer:
    """One file from probe to publish.  :meth:`run` records the outcome in ``result``."""

    def __init__(self, engine: TransferEngine, link: Link, entry: CatalogEntry):
        self.engine, self.link, self.entry = engine, link, entry
        self.name = link.name
        self.result = FileResult(self.name, "failed")
        self._lock = threading.Lock()
        self._error: XView2Error | None = None
        self._ready: dict[int, tuple[Buffer, memoryview]] = {}
        self._draining = False
        self._last_checkpoint = 0.0
        self._newest_state: dict[str, Any] | None = None
        self._writer: Future[None] | None = None
        self.hashed = 0
        self.digests: dict[str, Digest] = {}
        self.upload: Upload | None = None
        self.remote: Remote | None = None
        self.part_size = 0

    # -- helpers -----------------------------------------------------------------
    def _emit(self, kind: Any, **kw: Any) -> None:
        self.engine.progress(Event(kind, self.name, **kw))

    def _on_bytes(self, n: int) -> None:
        with self._lock:
            self.result.bytes_fetched += n
        self._emit("bytes", done=n)

    def _on_retry(self, detail: str) -> None:
        self._emit("retry", detail=detail)

    def _cancelled(self) -> bool:
        return self._error is not None or self.engine.stopping.is_set()

    def _fail(self, error: XView2Error) -> None:
        with self._lock:
            if self._error is None:
                self._error = error

    def _part_len(self, index: int) -> int:
        assert self.remote is not None and self.remote.size is not None
        return min(self.part_size, self.remote.size - index * self.part_size)

    # -- the run -------------------------------------------------------------------
    def run(self) -> FileResult:
        started = time.monotonic()
        try:
            self._run()
        except XView2Error as exc:
            self._record_failure(exc)
        except Exception as exc:  # a bug must not take the other files down
            log.exception("unexpected error while transferring %s", self.name)
            self._record_failure(XView2Error(f"unexpected error: {exc!r}", file=self.name))
        finally:
            self.result.seconds = time.monotonic() - started
        return self.result

    def _record_failure(self, exc: XView2Error) -> None:
        if self.engine.stopping.is_set() and not isinstance(exc, ChecksumMismatchError):
            exc = TransferInterrupted(
                "interrupted; finished parts are kept", file=self.name, hint="run again to resume"
            )
        self.result.status, self.result.error = failure_of(exc), exc
        self._emit("failed", detail=str(exc))

    def _run(self) -> None:
        engine, link = self.engine, self.link
        remote = self.remote = engine.http.probe(link, self._on_retry)
        left = link.seconds_left()
        log.info(
            "%s: %s bytes, %s, link valid for %s",
            self.name,
            remote.size,
            "ranges" if remote.ranges else "one stream (no Range support)",
            "an unknown time" if left is None else f"{int(left)}s",
        )
        self._emit(
            "probed",
            total=remote.size,
            detail="" if left is None else f"link valid for {max(0, int(left))}s",
        )
        if remote.size is None:
            raise ContentError(
                "the server did not say how large the file is",
                file=self.name,
                hint="this server cannot be used for verified, resumable downloads",
            )
        size = self.result.size = remote.size
        if self.entry.size is not None and self.entry.size != size:
            raise ContentError(
                f"the server offers {size:,} bytes but the catalog expects {self.entry.size:,}",
                file=self.name,
                hint="the link may lead to another file or an error page; check it",
            )
        planned = plan_part_size(size, engine.store, engine.options)
        upload = self.upload = engine.store.open_upload(self.name, size, planned)
        self._restore(upload, remote)
        upload = self.upload  # a new one if the old did not fit the file any more
        self.part_size = upload.part_size  # a resumed upload keeps its own
        done = upload.done_parts()
        nparts = math.ceil(size / self.part_size) if size else 0
        resumed = sum(self._part_len(i) for i in done if i < nparts)
        self.result.bytes_resumed = resumed
        self._emit("started", done=resumed, total=size)
        try:
            if remote.ranges:
                self._fetch_ranges(range(self.hashed, nparts), done)
            else:
                self._fetch_stream(range(self.hashed, nparts), done)
        finally:
            if self._error is not None or self.hashed < nparts:
                self._checkpoint(force=True)
                upload.close()
        if self._error is not None:
            raise self._error
        if self.hashed < nparts:  # stopped between parts: never verify a partial file
            raise TransferInterrupted(
                "interrupted; finished parts are kept", file=self.name, hint="run again to resume"
            )
        self._verify_and_publish(upload, size)

    def _restore(self, upload: Upload, remote: Remote) -> None:
        """Take up an earlier run's digest state, or start clean if it does not fit."""
        algos = choose_algorithms(self.entry, self.engine.options.all_digests)
        state = upload.load_state()
        if state and state.get("identity") == remote.identity():
            saved = state.get("digests", {})
            if all(saved.get(a) for a in algos):
                self.digests = {a: Digest(a, saved[a]) for a in algos}
                self.hashed = int(state.get("hashed", 0))
                log.info("%s: resuming after %d hashed parts", self.name, self.hashed)
                return
        if state and state.get("identity") not in (None, remote.identity()):
            log.warning("%s changed on the server since the last run; starting over", self.name)
            upload.abort()
            self.upload = upload = self.engine.store.open_upload(
                self.name, upload.size, upload.part_size
            )
        self.digests = {a: Digest(a) for a in algos}
        self.hashed = 0

    def _fetch_ranges(self, indices: Sequence[int], done: set[int]) -> None:
        engine = self.engine
        slots = threading.Semaphore(engine.options.connections)
        futures: list[Future[None]] = []
        for index in indices:
            buf = engine.pool.acquire(self._part_len(index), self._cancelled)
            if buf is None:
                break
            if not _acquire(slots, self._cancelled) or not _acquire(
                engine.connections, self._cancelled
            ):
                engine.pool.release(buf)
                break
            futures.append(engine.executor.submit(self._part, index, buf, index in done, slots))
        for future in futures:
            future.result()

    def _part(self, index: int, buf: Buffer, done: bool, slots: threading.Semaphore) -> None:
        assert self.upload is not None and self.remote is not None
        view = memoryview(buf)[: self._part_len(index)]
        released = False

        def release_connection() -> None:
            nonlocal released
            if not released:
                released = True
                self.engine.connections.release()
                slots.release()

        try:
            if self._cancelled():
                raise _Skip
            if not (done and self.upload.read_part(index, view)):
                self.engine.http.fetch(
                    self.link,
                    self.remote,
                    index * self.part_size,
                    view,
                    self._on_bytes,
                    self._on_retry,
                )
                release_connection()
                if not done:
                    self.upload.write_part(index, view)
            release_connection()
            self._complete(index, buf, view)
        except _Skip:
            self.engine.pool.release(buf)
        except XView2Error as exc:
            self._fail(exc)
            self.engine.pool.release(buf)
        except Exception as exc:
            log.exception("part %d of %s", index, self.name)
            self._fail(XView2Error(f"unexpected error in part {index}: {exc!r}", file=self.name))
            self.engine.pool.release(buf)
        finally:
            release_connection()

    def _fetch_stream(self, indices: Sequence[int], done: set[int]) -> None:
        assert self.upload is not None
        stream = SequentialStream(self.engine.http, self.link)
        try:
            for index in indices:
                buf = self.engine.pool.acquire(self._part_len(index), self._cancelled)
                if buf is None:
                    return
                view = memoryview(buf)[: self._part_len(index)]
                try:
                    if not (index in done and self.upload.read_part(index, view)):
                        stream.fill(index * self.part_size, view, self._on_bytes, self._on_retry)
                        if index not in done:
                            self.upload.write_part(index, view)
                except XView2Error as exc:
                    self._fail(exc)
                    self.engine.pool.release(buf)
                    return
                self._complete(index, buf, view)
        finally:
            stream.close()

    def _complete(self, index: int, buf: Buffer, view: memoryview) -> None:
        """Hand a landed part to the in-order digest; whoever holds the frontier drains."""
        with self._lock:
            self._ready[index] = (buf, view)
            if self._draining:
                return
            self._draining = True
        while True:
            with self._lock:
                item = self._ready.pop(self.hashed, None)
                if item is None or self._error is not None:
                    self._draining = False
                    leftovers = list(self._ready.values()) if self._error is not None else []
                    if item is not None:
                        leftovers.append(item)
                    if self._error is not None:
                        self._ready.clear()
                    break
            part_buf, part_view = item
            for digest in self.digests.values():
                digest.update(part_view)
            with self._lock:
                self.hashed += 1
            self.engine.pool.release(part_buf)
            self._checkpoint()
        for part_buf, _ in leftovers:
            self.engine.pool.release(part_buf)

    def _checkpoint(self, force: bool = False) -> None:
        """Save {digest state, parts hashed} for a later run to resume from.

        Checkpoints are written off the digest's path by one writer per file that always
        takes the newest state (older ones it has not reached are skipped).  A forced
        checkpoint waits for that writer and writes synchronously.
        """
        now = time.monotonic()
        if self.upload is None or self.remote is None:
            return
        if not force and now - self._last_checkpoint < self.engine.checkpoint_interval:
            return
        self._last_checkpoint = now
        state = {
            "identity": self.remote.identity(),
            "hashed": self.hashed,
            "digests": {a: d.state() for a, d in self.digests.items()},
        }
        if force:
            self._wait_for_checkpoints()
            self._write_checkpoint(state)
            return
        with self._lock:
            self._newest_state = state
            if self._writer is None:
                self._writer = self.engine.checkpoints.submit(self._checkpoint_writer)

    def _checkpoint_writer(self) -> None:
        while True:
            with self._lock:
                state, self._newest_state = self._newest_state, None
                if state is None:
                    self._writer = None
                    return
            self._write_checkpoint(state)

    def _write_checkpoint(self, state: dict[str, Any]) -> None:
        assert self.upload is not None
        try:
            self.upload.checkpoint(state)
        except XView2Error as exc:
            self._fail(exc)

    def _wait_for_checkpoints(self) -> None:
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.result()

    def _verify_and_publish(self, upload: Upload, size: int) -> None:
        self._wait_for_checkpoints()  # none may land after the upload is published
        self._emit("verifying")
        actual = {a: d.hexdigest() for a, d in self.digests.items()}
        expected = self.entry.expected_digests()
        compared = [a for a in actual if a in expected]
        for algo in compared:
            if actual[algo] != expected[algo]:
                upload.abort()
                raise ChecksumMismatchError(self.name, algo, expected[algo], actual[algo])
        upload.publish()
        verified = bool(compared)
        self.engine.manifest.record(
            self.name, size=size, digests=actual, verified=verified, source=self.link.display
        )
        self.result.status = "verified" if verified else "unverified"
        self.result.digests = actual
        self._emit("published", total=size, detail=self.result.status)


class _Skip(Exception):
    pass


def _acquire(sem: threading.Semaphore, cancelled: Callable[[], bool]) -> bool:
    while not sem.acquire(timeout=0.2):
        if cancelled():
            return False
    return True


class TransferEngine:
    """Runs a set of links against one store; reusable across calls (fresh links)."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        options: TransferOptions | None = None,
        progress: ProgressCallback | None = None,
    ):
        self.store, self.catalog = store, catalog
        self.options = options or TransferOptions()
        self.progress = progress or no_progress
        self.stopping = threading.Event()
        budget = max(self.options.memory_budget, self.options.part_size or 0)
        self.pool = BufferPool(budget, page_aligned=store.page_aligned_buffers)
        self.http = HttpClient(self.options.max_connections, self.options.retry, self.progress)
        self.connections = threading.Semaphore(self.options.max_connections)
        self.executor = ThreadPoolExecutor(
            max_workers=2 * self.options.max_connections, thread_name_prefix="xview2-part"
        )
        self.checkpoints = ThreadPoolExecutor(max_workers=4, thread_name_prefix="xview2-state")
        self.manifest = Manifest(store)
        interval = self.options.checkpoint_interval
        self.checkpoint_interval = store.checkpoint_interval if interval is None else interval

    def stop(self) -> None:
        """Ask every transfer to stop soon, keeping its finished parts."""
        self.stopping.set()
        self.http.stop.set()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.checkpoints.shutdown(wait=True)

    def already_there(self, link: Link, entry: CatalogEntry) -> FileResult | None:
        if self.options.force or self.manifest.is_corrupt(link.name):  # verify found it bad
            return None
        extracted = self.manifest.is_removed(link.name)  # removed after its verified extraction
        if not extracted and not self.manifest.is_published(link.name):
            return None
        recorded = self.manifest.get(link.name) or {}
        expected = entry.expected_digests()
        if any(recorded.get(a) not in (None, v) for a, v in expected.items()):
            return None
        if entry.size is not None and recorded.get("size") != entry.size:
            return None
        digests = {a: recorded[a] for a in ("sha1", "md5") if recorded.get(a)}
        return FileResult(link.name, "skipped", size=recorded.get("size"), digests=digests)

    def run(self, links: Sequence[Link]) -> DownloadReport:
        results: dict[str, FileResult] = {}
        todo: list[FileTransfer] = []
        for link in links:
            entry = self.catalog.lookup(link.name)
            skipped = self.already_there(link, entry)
            if skipped is not None:
                results[link.name] = skipped
                self.progress(Event("skipped", link.name, total=skipped.size))
            else:
                todo.append(FileTransfer(self, link, entry))
        if todo:
            # Every link starts at once: the probes and uploads open together.
            with ThreadPoolExecutor(len(todo), thread_name_prefix="xview2-file") as files:
                futures = {t.name: files.submit(t.run) for t in todo}
                try:
                    for name, future in futures.items():
                        results[name] = _wait(future)
                except KeyboardInterrupt:
                    self.stop()  # each transfer checkpoints and reports "interrupted"
                    for name, future in futures.items():
                        results[name] = future.result()
        report = DownloadReport([results[link.name] for link in links], self.store.url)
        report.peak_buffer_bytes = self.pool.peak
        return report


def _wait(future: Future[FileResult]) -> FileResult:
    # A timeout keeps the main thread responsive to Ctrl-C.
    while True:
        try:
            return future.result(timeout=0.5)
        except TimeoutError:
            continue
