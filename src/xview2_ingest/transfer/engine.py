"""The transfer engine: every link at once, each file in parallel ranges, verified in order.

Path of the bytes for one file::

    probe ─► plan parts ─► open (or resume) the store's upload, its state checked
       ─► lanes (one connection each; pinned or tuned per file, a global cap) claim spans
          of consecutive parts in index order and stream each span from one ranged
          response (:mod:`.spans`); for each part, as memory allows: read back what the
          store kept of it, fetch the rest into a pooled buffer
          ─► store.write_part(i), or store.confirm_part(i) for a part persisted earlier
       ─► digest the parts strictly in order, on the file's own digest thread (the
          reorder window is the buffer pool)
       ─► checkpoint {digest state, parts hashed} through the upload, written off the
          digest's path by one writer per file that always takes the newest state
       ─► all parts hashed: compare with the catalog ─► publish, or abort on mismatch

Every byte hashed is a byte the store holds: a part is hashed from the very buffer that
was written, or, when it was persisted by an earlier run, after ``confirm_part`` made the
store hold exactly those bytes.  A stop (Ctrl-C, SIGTERM, :meth:`TransferEngine.stop`)
keeps the bytes of parts under way and of parts waiting for the digest
(``keep_partial``), saves the state, and reports what was kept.

Memory is bounded by :class:`~.buffers.BufferPool`: a part holds its buffer from the
moment its fetch starts until the digest has consumed it, and no fetch starts without one.  Any part
but the lowest one without a buffer must leave a part's worth of the budget free, so the
digest's next part can always be fetched and the pool can never deadlock.  The budget
does not grow with file size; the part size is chosen so the budget holds a part for
every connection plus a small reorder window (see :func:`plan_part_size`), and grows only
to stay under the store's part-count limit.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..catalog import Catalog, CatalogEntry
from ..errors import (
    ChecksumMismatchError,
    ContentError,
    DestinationError,
    ExitCode,
    TransferInterrupted,
    XView2Error,
)
from ..events import Event, ProgressCallback, no_progress
from ..links import Link
from ..manifest import Manifest
from ..reports import DownloadReport, FileResult, failure_of, human_bytes
from ..settings import DEFAULT_MEMORY_MB
from ..stores import Exclusive, GroupedParts, PartSizer, RereadableParts, Store, Upload
from .buffers import Buffer, BufferPool
from .digest import Digest
from .http import HttpClient, Remote, RetryPolicy, SequentialStream
from .ratelimit import limiter_for
from .resume_state import InvalidState, engine_state, part_count
from .seed import same_file
from .spans import SpanFetcher
from .stopping import STOP
from .streams import Openers
from .tuning import START, ConnectionTuner, lane_limit

log = logging.getLogger(__name__)

MiB = 1 << 20
ALIGN = 64 * 1024
"""Part sizes are multiples of this (which direct I/O needs)."""


@dataclass(frozen=True)
class TransferOptions:
    connections: int | None = None
    """Parallel ranged connections per file; None: tuned per file by measuring
    (:mod:`.tuning`)."""
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
    limit_rate: int | None = None
    """Bytes per second across every connection of the run (``--limit-rate``); None: no cap."""
    ca_bundle: str | None = None
    """PEM file of CA certificates for HTTPS links; None: the system's."""


PENDING_WAIT = 10.0
"""Seconds a file's first requests wait, at most, for the destination's unfinished
uploads to be listed (they go out only for a file with none, and only until its probe
has answered)."""

PLANNED_CONNECTIONS = 16
"""Connections a part size is planned for when the count is tuned while running."""


def plan_part_size(size: int, store: Store, options: TransferOptions | None = None) -> int:
    """Bytes per part of a new upload.

    The requested size if given, else the store's default, shrunk so that the memory
    budget holds a buffer for every connection plus a reorder window of a quarter as many
    (at least 2): fewer, larger parts cost fewer requests, but a part that waits for a
    buffer is a connection standing idle.  Never below the store's minimum, and grown to
    stay under its part-count limit.  A store with needs of its own
    (:class:`~..stores.base.PartSizer`) has the last word.
    """
    options = options or TransferOptions()
    part = options.part_size
    if not part:
        conns = options.connections or PLANNED_CONNECTIONS
        buffers = conns + max(2, conns // 4)
        part = min(store.default_part_size, options.memory_budget // buffers // ALIGN * ALIGN)
    need = math.ceil(size / store.max_parts) if size else 0
    part = math.ceil(max(store.min_part_size, part, need) / ALIGN) * ALIGN
    if isinstance(store, PartSizer):
        part = store.part_size_for(size, part, options.memory_budget)
    return part


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
        self._ready: dict[int, tuple[Buffer, memoryview] | None] = {}
        """Parts landed ahead of the digest: in memory, or None when written to a store
        that reads them back (:class:`~.stores.RereadableParts`), their buffer given up."""
        self.read_back = 0  # parts the digest read back from the store
        self.hold_limit: int | None = None
        """Parts that may wait for the digest in memory before more are given up (None:
        no limit); set by the span fetcher when the upload reads parts back."""
        self._draining = False
        self._digester: ThreadPoolExecutor | None = None
        """This file's digest thread, while its parts are fetched (see :meth:`complete`)."""
        self._last_checkpoint = 0.0
        self._newest_state: dict[str, Any] | None = None
        self._durable_state: dict[str, Any] | None = None
        """The newest state whose parts the store holds durably (see :meth:`_checkpoint`)."""
        self._writer: Future[None] | None = None
        self.hashed = 0
        self.digests: dict[str, Digest] = {}
        self.upload: Upload | None = None
        self.remote: Remote | None = None
        self.part_size = 0
        connections = engine.options.connections or engine.options.max_connections
        self.outstanding_limit = connections + max(2, connections // 4)
        self.outstanding = threading.Semaphore(self.outstanding_limit)
        """Parts of this file in memory (fetching, being written, waiting for the digest):
        what a kill loses.  Without this bound a store slower than the source would let
        fetched parts pile up to the whole memory budget."""
        self._done: set[int] = set()  # parts persisted when this run began
        self.kept: dict[int, int] = {}  # bytes of unhashed parts the store can give back

    # -- helpers -----------------------------------------------------------------
    def _take(self, index: int) -> Buffer | None:
        """A buffer for part ``index``, within this file's and the run's bounds."""
        if not _acquire(self.outstanding, self.cancelled):
            return None
        buf = self.engine.pool.acquire(self.part_len(index), self.cancelled)
        if buf is None:
            self.outstanding.release()
        return buf

    def give(self, buf: Buffer) -> None:
        self.engine.pool.release(buf)
        self.outstanding.release()

    def emit(self, kind: Any, **kw: Any) -> None:
        self.engine.progress(Event(kind, self.name, **kw))

    def on_bytes(self, n: int) -> None:
        with self._lock:
            self.result.bytes_fetched += n
        self.emit("bytes", done=n)

    def on_retry(self, detail: str) -> None:
        self.emit("retry", detail=detail)

    def cancelled(self) -> bool:
        return self._error is not None or self.engine.stopping.is_set()

    def fail(self, error: XView2Error) -> None:
        with self._lock:
            if self._error is None:
                self._error = error

    def part_len(self, index: int) -> int:
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
            self._record_failure(XView2Error.unexpected(exc, file=self.name))
        finally:
            self.result.seconds = time.monotonic() - started
        return self.result

    def _record_failure(self, exc: XView2Error) -> None:
        if self.engine.stopping.is_set() and not isinstance(exc, ContentError):
            exc = self._interrupted()
        self.result.status, self.result.error = failure_of(exc), exc
        self.emit("failed", detail=str(exc))

    def _interrupted(self) -> TransferInterrupted:
        kept, size = self.result.bytes_kept, self.result.size or 0
        exc = TransferInterrupted(
            f"stopped; kept {human_bytes(kept)} of {human_bytes(size)}",
            file=self.name,
            hint="run again to resume",
        )
        exc.exit_code = self.engine.stop_code
        return exc

    def _bytes_before(self, index: int) -> int:
        return min(self.result.size or 0, index * self.part_size)

    def _run(self) -> None:
        engine, link = self.engine, self.link
        openers = self._openers()
        engine.http.warm(
            link,
            2 * (engine.options.connections or START),  # a lane and its spare
            openers.connected if openers is not None else None,
        )
        try:
            self._transfer(openers)
        finally:
            if openers is not None:
                openers.close()

    def _openers(self) -> Openers | None:
        """The first lanes' first requests, to send while the probe is on its way
        (:class:`~.streams.Openers`): when the catalog tells the file's size (near enough
        to plan its parts) and no upload of it is left here to resume."""
        engine, options = self.engine, self.engine.options
        store = engine.store
        size = self.entry.size
        if size is None:
            size = self.entry.approx_size
        if not size:
            return None
        part = plan_part_size(size, store, options)
        limit = lane_limit(options.max_connections, engine.pool.budget, part)
        lanes = ConnectionTuner(pinned=options.connections, limit=limit).start()
        lanes = min(lanes, max(1, options.max_connections // engine.files))  # its share
        fresh = partial(engine.starts_fresh, self.name)
        return Openers(engine.http, self.link, part, size, lanes, fresh)

    def _transfer(self, openers: Openers | None) -> None:
        engine, link = self.engine, self.link
        try:
            remote = self.remote = engine.http.probe(link, self.on_retry)
        finally:
            if openers is not None:
                openers.seal()
        left = link.seconds_left()
        log.info(
            "%s: %s bytes, %s, link valid for %s",
            self.name,
            remote.size,
            "ranges" if remote.ranges else "one stream (no Range support)",
            "an unknown time" if left is None else f"{int(left)}s",
        )
        self.emit(
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
        self._open(planned, remote)
        upload = self.upload
        assert upload is not None
        self.part_size = upload.part_size  # a resumed upload keeps its own
        nparts = math.ceil(size / self.part_size) if size else 0
        self._done = upload.done_parts()
        self.kept = {i: n for i, n in upload.kept_parts().items() if self.hashed <= i < nparts}
        resumed = self._bytes_before(self.hashed) + sum(self.kept.values())
        self.result.bytes_resumed = resumed
        self.emit("started", done=resumed, total=size)
        self._digester = ThreadPoolExecutor(1, thread_name_prefix=f"xview2-digest-{self.name}")
        try:
            if remote.ranges:
                SpanFetcher(self, range(self.hashed, nparts), openers).run()
            else:
                self._fetch_stream(range(self.hashed, nparts))
        finally:
            self._digester.shutdown(wait=True)  # every part landed is hashed, if it can be
            if self._error is not None or self.hashed < nparts:
                self._keep_waiting_parts()
                self._checkpoint(force=True)
                upload.close()
                self.result.bytes_kept = self._bytes_before(self.hashed) + sum(
                    min(n, self.part_len(i))
                    for i, n in upload.kept_parts().items()
                    if self.hashed <= i < nparts
                )
        if self._error is not None:
            raise self._error
        if self.hashed < nparts:  # stopped between parts: never verify a partial file
            raise self._interrupted()
        self._verify_and_publish(upload, size)

    def _open(self, planned: int, remote: Remote) -> None:
        """Open the store's upload and take up an earlier run's digest state if it passes
        every check (:func:`.resume_state.engine_state`); else start the file clean."""
        store, size = self.engine.store, remote.size or 0
        algos = choose_algorithms(self.entry, self.engine.options.all_digests)
        upload = self.upload = store.open_upload(self.name, size, planned)
        saved = upload.load_state()
        if saved is not None:
            seeded = same_file(saved.get("identity"), remote)  # or seeded by an import
            try:
                state = engine_state(
                    saved,
                    identity=saved["identity"] if seeded else remote.identity(),
                    algorithms=algos,
                    size=size,
                    part_size=upload.part_size,
                    done=upload.done_parts(),
                )
                self.digests = {a: Digest(a, state.digests[a]) for a in algos}
                self.hashed = state.hashed
                log.info("%s: resuming after %d hashed parts", self.name, self.hashed)
                return
            except (InvalidState, ValueError) as exc:
                message = f"discarding the resume state of {self.name} ({exc}); starting over"
                log.warning("%s", message)
                self.emit("info", detail=message)
                upload.abort()
                self.upload = store.open_upload(self.name, size, upload.part_size)
        self.digests = {a: Digest(a) for a in algos}
        self.hashed = 0

    def land(
        self,
        index: int,
        view: memoryview,
        fetch: Callable[[int, memoryview, Callable[[int], None]], None],
        *,
        keep_on_failure: bool,
        persist: bool = True,
    ) -> None:
        """Fill ``view`` with part ``index`` and (with ``persist``) make the store hold
        exactly it (:meth:`persist`).

        Bytes the store kept of the part are read back, the rest fetched from the offset
        where they end.  When the fetch fails or is stopped, the bytes that did arrive
        are kept for the next run.
        """
        upload = self.upload
        assert upload is not None
        have = self.kept.get(index, 0)
        if have and not upload.read_part(index, view[:have]):
            have = 0
        filled = have
        if have < view.nbytes:

            def counted(n: int) -> None:
                nonlocal filled
                filled += n
                self.on_bytes(n)

            try:
                fetch(index * self.part_size + have, view[have:], counted)
            except XView2Error as exc:
                if keep_on_failure and filled > have and not isinstance(exc, ContentError):
                    self.keep(index, view[:filled])
                raise
        if persist:
            self.persist(index, view)

    def persist(self, index: int, view: memoryview) -> None:
        """Make the store hold exactly ``view`` as part ``index``: a part persisted by an
        earlier run is confirmed (the store holds these bytes, or is given them again);
        any other is written."""
        upload = self.upload
        assert upload is not None
        if index in self._done:
            upload.confirm_part(index, view)
        else:
            upload.write_part(index, view)

    def keep(self, index: int, data: memoryview) -> None:
        assert self.upload is not None
        try:
            self.upload.keep_partial(index, data)
        except XView2Error as exc:
            log.warning("%s: could not keep part %d: %s", self.name, index, exc)

    def _keep_waiting_parts(self) -> None:
        """Parts that landed but wait for an earlier one to be hashed: keep them."""
        with self._lock:
            waiting = sorted(self._ready.items())
            self._ready.clear()
        for index, item in waiting:
            if item is None:
                continue  # written whole, known to the store
            buf, view = item
            if not isinstance(self._error, ContentError):
                self.keep(index, view)
            self.give(buf)

    def _fetch_stream(self, indices: Sequence[int]) -> None:
        assert self.upload is not None
        stream = SequentialStream(self.engine.http, self.link)

        def fetch(start: int, into: memoryview, on_bytes: Callable[[int], None]) -> None:
            stream.fill(start, into, on_bytes, self.on_retry)

        try:
            for index in indices:
                buf = self._take(index)
                if buf is None:
                    return
                view = memoryview(buf)[: self.part_len(index)]
                try:
                    # the stream's on_bytes also counts bytes skipped to reach an offset,
                    # so what landed in the part is not known: keep only whole parts
                    self.land(index, view, fetch, keep_on_failure=False)
                except XView2Error as exc:
                    self.fail(exc)
                    self.give(buf)
                    return
                self.complete(index, buf, view)
        finally:
            stream.close()

    def complete(self, index: int, buf: Buffer, view: memoryview) -> None:
        """Hand a landed part to the in-order digest, which runs on this file's digest
        thread and hashes every part that is contiguous with what it hashed so far.

        Not on the caller's thread: the lane that lands the frontier part would otherwise
        hash everything that waited behind it (a few hundred MiB at times) while its
        connection stood idle (``docs/benchmarks-wan.md``).  A part that must wait while
        enough others already wait in memory is given up when the store can read it back
        whole: the digest reads it into the buffer it just hashed.  Draining goes on
        after a failure or a stop: every part hashed is a part the next run need not
        fetch.  Parts still waiting when the run ends are kept by
        :meth:`_keep_waiting_parts`.
        """
        with self._lock:
            given_up = self._may_give_up(index)
            self._ready[index] = None if given_up else (buf, view)
            drain = not self._draining and not given_up
            self._draining = self._draining or drain
        if given_up:
            self.give(buf)
        elif drain:
            assert self._digester is not None
            self._digester.submit(self._drain_or_fail)

    def _drain_or_fail(self) -> None:
        """:meth:`_drain` on the digest thread: its failure is the file's."""
        try:
            self._drain()
        except XView2Error as exc:
            self.fail(exc)
        except Exception as exc:  # a bug must not leave the file waiting
            log.error("hashing %s", self.name, exc_info=exc)
            self.fail(XView2Error.unexpected(exc, file=self.name))

    def _may_give_up(self, index: int) -> bool:
        """Called under the lock: may landed part ``index`` wait on the store alone?"""
        limit, upload = self.hold_limit, self.upload
        if limit is None or index == self.hashed or not isinstance(upload, RereadableParts):
            return False
        waiting = sum(1 for item in self._ready.values() if item is not None)
        return waiting >= limit and upload.has_part(index)

    def _drain(self) -> None:
        held: Buffer | None = None
        try:
            while True:
                with self._lock:
                    if self.hashed not in self._ready:
                        self._draining = False
                        return
                    item = self._ready.pop(self.hashed)
                if item is None:
                    assert held is not None  # the drain began with a part in memory
                    view = memoryview(held)[: self.part_len(self.hashed)]
                    self._read_back(self.hashed, view)
                else:
                    if held is not None:
                        self.give(held)
                    held, view = item
                for digest in self.digests.values():
                    digest.update(view)
                with self._lock:
                    self.hashed += 1
                self._checkpoint()
        except BaseException:
            with self._lock:
                self._draining = False
            raise
        finally:
            if held is not None:
                self.give(held)

    def _read_back(self, index: int, view: memoryview) -> None:
        assert self.upload is not None
        self.read_back += 1
        if not self.upload.read_part(index, view):
            raise DestinationError(
                f"cannot read back part {index + 1} from {self.engine.store.url}",
                file=self.name,
                hint="check the destination's disk, then run again to resume",
            )

    def _checkpoint(self, force: bool = False) -> None:
        """Save {digest state, parts hashed} for a later run to resume from.

        Checkpoints are written off the digest's path by one writer per file that always
        takes the newest state (older ones it has not reached are skipped).  A forced
        checkpoint waits for that writer and writes synchronously.  To an upload that
        stores parts in groups (:class:`~..stores.GroupedParts`) only states whose parts
        are all in finished groups are written: taken at each group's end, and the last
        of them is what a forced checkpoint mid-group writes.
        """
        now = time.monotonic()
        if self.upload is None or self.remote is None or not self.part_size:
            return
        group = self.upload.group_parts if isinstance(self.upload, GroupedParts) else 1
        due = force or now - self._last_checkpoint >= self.engine.checkpoint_interval
        if not due and group == 1:
            return
        last = part_count(self.remote.size or 0, self.part_size)
        if self.hashed % group == 0 or self.hashed == last:
            self._durable_state = {
                "identity": self.remote.identity(),
                "hashed": self.hashed,
                "digests": {a: d.state() for a, d in self.digests.items()},
            }
        elif not force:
            return  # mid-group: the state written at the group's start stands
        state = self._durable_state
        if not due or state is None:
            return
        self._last_checkpoint = now
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
            self.fail(exc)

    def _wait_for_checkpoints(self) -> None:
        with self._lock:
            writer = self._writer
        if writer is not None:
            writer.result()

    def _verify_and_publish(self, upload: Upload, size: int) -> None:
        self._wait_for_checkpoints()  # none may land after the upload is published
        self.emit("verifying")
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
        self.emit("published", total=size, detail=self.result.status)


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
        self.stop_code: ExitCode = ExitCode.INTERRUPTED
        budget = max(self.options.memory_budget, self.options.part_size or 0)
        self.pool = BufferPool(budget, page_aligned=store.page_aligned_buffers)
        self.http = HttpClient(
            self.options.max_connections,
            self.options.retry,
            self.progress,
            ca_bundle=self.options.ca_bundle,
        )
        self.http.limiter = limiter_for(self.options.limit_rate)
        self.connections = threading.Semaphore(self.options.max_connections)
        self.checkpoints = ThreadPoolExecutor(max_workers=4, thread_name_prefix="xview2-state")
        self.manifest = Manifest(store)
        interval = self.options.checkpoint_interval
        self.checkpoint_interval = store.checkpoint_interval if interval is None else interval
        self._pending: Future[set[str]] | None = None
        self.files = 1
        """Files this run fetches (their first requests share ``max_connections``)."""

    def stop(self, code: ExitCode = ExitCode.INTERRUPTED) -> None:
        """Ask every transfer to stop soon, keeping what it fetched; the files' errors
        carry ``code`` (130 for Ctrl-C, 143 for SIGTERM)."""
        if not self.stopping.is_set():
            self.stop_code = code
        self.stopping.set()
        self.http.stop.set()

    def close(self) -> None:
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
        """Transfer every link, holding the destination for the run (one writer at a
        time), and stopping cleanly when :data:`.stopping.STOP` is requested."""
        store = self.store
        with STOP.watching():
            if isinstance(store, Exclusive):
                with store.exclusive():
                    return self._run(links)
            return self._run(links)

    def starts_fresh(self, name: str) -> bool:
        """Whether no unfinished upload of ``name`` is here to resume (waits for the
        destination's listing; False if it failed)."""
        if self._pending is None:
            return False
        try:
            return name not in self._pending.result(timeout=PENDING_WAIT)
        except Exception:  # timed out, or the listing failed: nothing is sent early
            return False

    def _list_pending(self) -> Future[set[str]]:
        """The names of the destination's unfinished uploads, listed in the background
        while the files' probes are on their way."""
        listed: Future[set[str]] = Future()
        listed.set_running_or_notify_cancel()

        def list_them() -> None:
            try:
                listed.set_result({p.name for p in self.store.pending_uploads()})
            except BaseException as exc:  # (kept for starts_fresh, which says False)
                listed.set_exception(exc)

        threading.Thread(target=list_them, name="xview2-pending", daemon=True).start()
        return listed

    def _run(self, links: Sequence[Link]) -> DownloadReport:
        self._pending = self._list_pending()
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
        self.files = max(1, len(todo))
        if todo:
            # Every link starts at once: the probes and uploads open together.
            with ThreadPoolExecutor(len(todo), thread_name_prefix="xview2-file") as files:
                futures = {t.name: files.submit(t.run) for t in todo}
                try:
                    for name, future in futures.items():
                        results[name] = self._wait(future)
                except KeyboardInterrupt:
                    self.stop()  # each transfer checkpoints and reports "stopped"
                    for name, future in futures.items():
                        results[name] = future.result()
        report = DownloadReport([results[link.name] for link in links], self.store.url)
        report.peak_buffer_bytes = self.pool.peak
        return report

    def _wait(self, future: Future[FileResult]) -> FileResult:
        # A timeout keeps the main thread responsive to Ctrl-C and to a stop request.
        while True:
            if STOP.is_set() and not self.stopping.is_set():
                self.stop(STOP.exit_code)
            try:
                return future.result(timeout=0.2)
            except TimeoutError:
                continue
