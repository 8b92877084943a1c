"""Long-span fetching: each connection streams many parts from one ranged response.

Over a WAN every request costs a round trip before its first byte, and a connection
that waits for it is idle.  Asking each connection for one part at a time wastes that
round trip once per part (about a fifth of a connection's time for a few MiB at 20 MiB/s
and 50 ms).  Here each *lane* (one connection) claims a *span* of consecutive parts,
asks for all of its bytes in one request and fills successive part buffers from that one
response; the parts, their order of hashing, the buffer pool and the store's part
mapping are those of the engine.

Rules that keep it correct and bounded:

- Spans are handed out in index order by :class:`SpanPlan`; their length shrinks as the
  file's unclaimed remainder shrinks, and near the end an idle lane *steals* the back
  half of the span with most parts left, so the last parts do not straggle behind one
  connection.
- A lane takes a part's buffer from the pool only when it starts reading that part.
  Every part but the lowest one not yet holding a buffer (the one the in-order digest
  waits for) must leave a part's worth of the budget free, so the digest's next part can
  always be read and the pool cannot deadlock, however far ahead other lanes are.  A lane
  that must wait stops reading; the server is held back by TCP, not by our memory.
- A lane sends its next span's request a round trip before its current span ends, on
  a second connection (:class:`Lane`), so it never waits a round trip between spans.
  The first lanes' first parts may have been asked for while the probe was on its way
  (:class:`~.streams.Openers`): each is a span of its own, and the lane that claims it
  reads that reply.
- A break mid-span is retried from the first missing byte to the span's (current) end,
  under the same retry policy as single ranges; every reply is checked like theirs.
- Each part lands through the engine's ``land``: bytes the store kept of it are read
  back and the rest fetched (from the lane's response when it is already there, else by
  a request from that offset), and a part persisted by an earlier run is confirmed.
- To a remote store (not :class:`~..stores.LocalFiles`), over a source with a round trip
  (:data:`WRITE_BEHIND_RTT`), a fetched part is written off the lane, by a
  writer thread: the lane's connection keeps streaming while the part goes up, instead
  of idling for the length of the upload.  The part
  keeps its buffer (and its place in the memory bounds) until it is digested.
"""

from __future__ import annotations

import logging
import math
import mmap
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from ..errors import XView2Error
from ..links import Link
from ..reports import FileResult
from ..stores import GroupedParts, LocalFiles, RereadableParts, Upload
from .http import HttpClient, Remote
from .streams import Openers, SpanStream
from .tuning import ConnectionTuner, lane_limit

Buffer = mmap.mmap | bytearray


class FileTransfer(Protocol):
    """What the lanes need of the file they work for (``engine.FileTransfer``)."""

    name: str
    link: Link
    remote: Remote | None
    upload: Upload | None
    part_size: int
    hashed: int
    result: FileResult
    engine: Any
    outstanding: threading.Semaphore
    outstanding_limit: int
    kept: dict[int, int]
    hold_limit: int | None
    read_back: int

    def land(
        self,
        index: int,
        view: memoryview,
        fetch: Callable[[int, memoryview, Callable[[int], None]], None],
        *,
        keep_on_failure: bool,
        persist: bool = True,
    ) -> None: ...
    def give(self, buf: Buffer) -> None: ...
    def persist(self, index: int, view: memoryview) -> None: ...
    def keep(self, index: int, data: memoryview) -> None: ...
    def part_len(self, index: int) -> int: ...
    def complete(self, index: int, buf: Buffer, view: memoryview) -> None: ...
    def on_bytes(self, n: int) -> None: ...
    def on_retry(self, detail: str) -> None: ...
    def cancelled(self) -> bool: ...
    def fail(self, error: XView2Error) -> None: ...
    def emit(self, kind: Any, **kw: Any) -> None: ...


log = logging.getLogger(__name__)

MiB = 1 << 20
SPAN_ROUND_TRIPS = 4
"""A span lasts this many round trips (as measured).  Its request goes out ahead (see
:class:`Lane`), so a span's length no longer buys back the round trip; what it costs is
distance: parts landed ahead of the in-order digest wait for it, and the longer the spans
the more of them the digest must still hash once the last byte is in (a quarter of a
second at 16 round trips, 50 ms and 20 MiB/s per connection; none at 4, and 2 or 8 were
slower through ``bench/wan_proxy.py``)."""
MAX_SPAN = 64 * MiB
"""No span asks for more than this: a longer one gains nothing on the round trip."""
WRITE_BEHIND_RTT = 0.005
"""A remote store's parts are written off the lane once the source's round trip is this
long or longer: there a lane that waits for the upload lets its connection go idle and
slow down.  Below it a paused connection streams again at once, and the writer threads
cost more than they hide (about 7 % of an unthrottled S3 transfer on loopback, see
docs/benchmarks.md)."""

AHEAD_ROUND_TRIPS = 1.0
"""A lane sends its next span's request when the bytes left in its current span would
stream in this many of its last reply times (request to headers): the reply's first byte
arrives as the last one of the current span is read.  No more: the server streams the
next reply as soon as it has the request, and a lane whose two connections stream at
once takes more than one connection's share of a per-connection-capped link."""
AHEAD_RTT = 0.015
"""Requests are sent ahead only over a round trip this long or longer.  Below it a lane
that asks when it needs the bytes waits for little (at 15 ms, 7 % of a 4 MiB part at
20 MiB/s), and a server on this machine, or next to it, is not made to hold a second
request from every lane for so little."""


@dataclass
class Span:
    """Parts ``start`` .. ``end - 1`` for one lane; ``start`` moves as parts are begun,
    ``end`` moves down when another lane steals the tail."""

    start: int
    end: int


class SpanPlan:
    """Hands out spans in index order and splits the largest one for an idle lane."""

    def __init__(self, indices: Sequence[int], span_parts: int, starts: Collection[int] = ()):
        """``starts``: parts that must begin a span (those with bytes kept by an earlier
        run, fetched from where those bytes end: a span running into one from before
        would have the server send bytes already here)."""
        self.lock = threading.Lock()
        self._queue: list[Span] = []
        run: list[int] = []
        for i in indices:
            if run and (i != run[-1] + 1 or i in starts):
                self._flush(run)
                run = [i]
            else:
                run.append(i)
        self._flush(run)
        self._queue.reverse()  # pop() from the end takes the lowest
        self.span_parts = max(1, span_parts)
        self.active: list[Span] = []
        self.steals = 0

    def _flush(self, run: list[int]) -> None:
        if run:
            self._queue.append(Span(run[0], run[-1] + 1))

    def unclaimed(self) -> int:
        with self.lock:
            return sum(s.end - s.start for s in self._queue)

    def claim(self, lanes: int, exclude: Span | None = None) -> Span | None:
        """The next span for a lane (of ``lanes`` working), or the back half of the
        busiest one (never ``exclude``, the asking lane's own) when none is left; None
        when nothing is left to share."""
        with self.lock:
            self.active = [s for s in self.active if s.start < s.end]
            if self._queue:
                head = self._queue[-1]
                left = sum(s.end - s.start for s in self._queue)
                n = max(1, min(self.span_parts, math.ceil(left / max(1, lanes))))
                n = min(n, head.end - head.start)
                span = Span(head.start, head.start + n)
                head.start += n
                if head.start >= head.end:
                    self._queue.pop()
                self.active.append(span)
                return span
            others = (s for s in self.active if s is not exclude)
            victim = max(others, key=lambda s: s.end - s.start, default=None)
            if victim is None or victim.end - victim.start < 2:
                return None
            mid = victim.start + (victim.end - victim.start + 1) // 2
            span = Span(mid, victim.end)
            victim.end = mid
            self.active.append(span)
            self.steals += 1
            return span

    def next_part(self, span: Span) -> int | None:
        """Begin the span's next part, or None when the span is finished (or stolen)."""
        with self.lock:
            if span.start >= span.end:
                return None
            span.start += 1
            return span.start - 1


class Lane:
    """One lane's connections: the stream it reads, and a spare on which the next span's
    request goes out a round trip before the current span ends.

    HTTP/1.1 clients here cannot pipeline (``http.client`` sends a request only after
    the last reply was read), so a lane that asked for its next span when the current
    one ended would leave its connection idle for a round trip per span; asked ahead on
    the spare, the reply arrives as the last bytes of the current span are read.  A lane
    reads one stream at a time, so ``--connections N`` means N streams being read and up
    to N more requests on their way (2 N connections open to the server)."""

    def __init__(self, client: HttpClient, link: Link, remote: Remote):
        self.stream = SpanStream(client, link, remote)
        self._spare = SpanStream(client, link, remote)
        self._following: Span | None = None
        self._dropped = 0  # requests of streams replaced by ones sent before
        self.asked = False
        """Whether the current span already tried to claim its successor."""
        self.sent_ahead = 0

    @property
    def requests(self) -> int:
        return self._dropped + self.stream.requests + self._spare.requests

    def _replaced(self, old: SpanStream) -> None:
        self._dropped += old.requests
        old.close()

    def ask_ahead(self, span: Span, first: int, last: int, sent: SpanStream | None = None) -> None:
        """Claimed ``span`` comes next: send its request (bytes ``first``..``last``), or
        take up ``sent``, that request already on its way."""
        self._following = span
        if sent is not None:
            self._replaced(self._spare)
            self._spare = sent
            return
        self._spare.ask_ahead(first, last)
        self.sent_ahead += 1

    def take_up(self, stream: SpanStream) -> None:
        """Read ``stream`` (a request already on its way for this lane's span) next."""
        self._replaced(self.stream)
        self.stream = stream

    def next_span(self) -> Span | None:
        """End the current span; the one asked for ahead, if any, becomes current."""
        self.stream.close()
        self.asked = False
        following, self._following = self._following, None
        if following is not None:
            self.stream, self._spare = self._spare, self.stream
        return following

    def close(self) -> None:
        self.stream.close()
        self._spare.close()


def asks_ahead(latency: float | None) -> bool:
    """Whether lanes send their next span's request ahead, given the source's round trip
    as measured so far (None before the first reply): see :data:`AHEAD_RTT`."""
    return latency is not None and latency >= AHEAD_RTT


def span_parts(budget: int, part: int, lanes: int) -> int:
    """Parts per span: what the budget can hold ahead of the digest, shared by the lanes.

    Each lane needs a buffer for the part it reads; the rest of the budget holds parts
    that landed ahead of the digest.  With lanes at staggered points of their spans, a
    lane is on average halfway through its span, so spans of twice each lane's share of
    that rest keep the lanes from waiting on memory.
    """
    ahead = max(0, budget - (lanes + 1) * part)
    span = min(MAX_SPAN, 2 * ahead // max(1, lanes))
    return max(1, span // part)


def writes_behind(latency: float | None) -> bool:
    """Whether a remote store's parts go up from writer threads, given the source's round
    trip as measured so far (None before the first reply): see :data:`WRITE_BEHIND_RTT`."""
    return latency is not None and latency >= WRITE_BEHIND_RTT


class SpanFetcher:
    """Runs the lanes of one file over a :class:`SpanPlan`, as many as the tuner says."""

    def __init__(self, ft: FileTransfer, indices: Sequence[int], openers: Openers | None = None):
        """``openers``: the first lanes' first requests, sent before the lanes began;
        their parts are spans of their own, so each is taken up by the lane that claims
        it (see :class:`~.streams.Openers`)."""
        self.ft = ft
        self._openers = openers
        self.engine = ft.engine
        opts, budget = self.engine.options, self.engine.pool.budget
        self.tuner = ConnectionTuner(
            pinned=opts.connections, limit=lane_limit(opts.max_connections, budget, ft.part_size)
        )
        self.rereads = isinstance(ft.upload, RereadableParts)
        if self.rereads:  # parts far ahead of the digest wait on the store, not in memory
            self.memory_parts = max(1, MAX_SPAN // ft.part_size)
        else:
            self.memory_parts = span_parts(budget, ft.part_size, self.tuner.ceiling)
        starts = set(ft.kept)
        for first in openers.firsts() if openers is not None else ():
            if first % ft.part_size == 0:
                starts |= {first // ft.part_size, first // ft.part_size + 1}
        self.plan = SpanPlan(indices, 1, starts)  # one part until a round trip is measured
        self._base_window = ft.outstanding_limit
        self._grow_window()
        self._granted: set[int] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._latency: float | None = None
        self._rate: float | None = None
        self.memory_wait = 0.0
        self.requests = 0
        self.sent_ahead = 0
        self.written_behind = 0
        self._writer: ThreadPoolExecutor | None = None
        self._grouped = isinstance(ft.upload, GroupedParts) and ft.upload.group_parts > 1
        if not isinstance(self.engine.store, LocalFiles):
            # A remote store's write is a request of its own: made off the lane (once the
            # round trip is long enough, see WRITE_BEHIND_RTT), so the lane's connection
            # keeps streaming while the part goes up.  Where parts of a group wait for
            # the group's earlier ones, every part this file may hold has a thread, so
            # waiting writes never keep the part they wait for from being written.
            threads = self.tuner.ceiling
            if self._grouped:
                threads = max(threads, ft.outstanding_limit)
            self._writer = ThreadPoolExecutor(threads, thread_name_prefix=f"xview2-write-{ft.name}")

    # -- the run -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        finally:
            self._wake_waiting_writes()
            if self._writer is not None:
                self._writer.shutdown(wait=True)  # every part fetched is written or kept

    def _run(self) -> None:
        self._add_lanes(self.tuner.start())
        while True:
            alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                break
            alive[0].join(self.tuner.interval(self._latency))
            if self.ft.cancelled():
                self._wake_waiting_writes()
                continue
            if self.plan.unclaimed() == 0:
                continue
            more = self.tuner.observe(time.monotonic(), self.ft.result.bytes_fetched)
            if more:
                self._add_lanes(more)
                self.tuner.lanes = len(self._threads)
        if self.tuner.settled_at is None:
            self.tuner.settle("the file ended")
        self._report()

    def _wake_waiting_writes(self) -> None:
        """Once the file stopped or failed, parts waiting for their group's earlier parts
        (:class:`~..stores.GroupedParts`) fail instead of waiting for parts that will not
        come."""
        upload = self.ft.upload
        if self.ft.cancelled() and isinstance(upload, GroupedParts):
            upload.interrupt()

    def _report(self) -> None:
        lanes = len(self._threads)
        how = self.tuner.describe(lanes)
        log.info("%s: %s", self.ft.name, how)
        log.info(
            "%s: %d ranged requests (%d sent ahead), spans of at most %d parts, "
            "%d tails stolen, "
            "%.1f lane-seconds waiting for memory, %d parts hashed from the store, "
            "%d parts written behind the lanes",
            self.ft.name,
            self.requests,
            self.sent_ahead,
            self.memory_parts,
            self.plan.steals,
            self.memory_wait,
            self.ft.read_back,
            self.written_behind,
        )
        self.ft.emit("info", detail=how)

    def _add_lanes(self, n: int) -> None:
        for _ in range(n):
            if len(self._threads) >= self.tuner.ceiling:
                return
            if self._threads and not self.engine.connections.acquire(blocking=False):
                self.tuner.settle("the connections across all files are in use")
                return
            if not self._threads and not _acquire(self.engine.connections, self.ft.cancelled):
                return
            thread = threading.Thread(
                target=self._lane, name=f"xview2-lane-{self.ft.name}", daemon=True
            )
            self._threads.append(thread)
            self._hold_what_memory_allows()
            thread.start()

    def _hold_what_memory_allows(self) -> None:
        """Parts that may wait for the digest in memory, with a buffer for every lane and
        the digest's reserve; past that a part is given up to the store (when it reads
        parts back).  On a link without a round trip to hide, spans of one part keep the
        parts that wait under this, and nothing is read back."""
        if self.rereads:
            lanes, pool = len(self._threads), self.engine.pool
            self.ft.hold_limit = max(2, pool.budget // self.ft.part_size - lanes - 1)

    # -- one lane ------------------------------------------------------------------------
    def _lane(self) -> None:
        ft = self.ft
        lane = Lane(self.engine.http, ft.link, ft.remote)  # type: ignore[arg-type]
        try:
            while not ft.cancelled():
                span = lane.next_span()
                if span is None:
                    span = self.plan.claim(self.tuner.ceiling)
                    if span is None:  # (room above for lanes still to come)
                        return
                    if (sent := self._opened_for(span)) is not None:
                        lane.take_up(sent)
                self._run_span(span, lane)
        except XView2Error as exc:
            ft.fail(exc)
        except Exception as exc:  # a bug must not hang the file
            ft.fail(_unexpected(ft.name, exc))
        finally:
            lane.close()
            with self._lock:
                self.requests += lane.requests
                self.sent_ahead += lane.sent_ahead
            self.engine.connections.release()

    def _opened_for(self, span: Span) -> SpanStream | None:
        """The request sent for ``span`` before the lanes began, if any (see
        :class:`Openers`)."""
        if self._openers is None:
            return None
        ft = self.ft
        first = span.start * ft.part_size + ft.kept.get(span.start, 0)
        return self._openers.take(first, self._span_end_byte(span) - 1, ft.remote)  # type: ignore[arg-type]

    def _grow_window(self) -> None:
        """Let this file hold as many parts as its longest spans need.

        The engine bounds the parts a file holds in memory (what a kill loses) for one
        part per connection.  A lane that streams a span reads ahead of the digest, so the
        bound here is a span per lane; :meth:`_keep_free` holds it to the spans actually
        in use (one part each where no round trip is worth hiding)."""
        lanes = self.tuner.ceiling
        window = lanes * self.memory_parts + max(2, lanes // 4)
        for _ in range(window - self.ft.outstanding_limit):
            self.ft.outstanding.release()
        self.ft.outstanding_limit = max(window, self.ft.outstanding_limit)

    def _run_span(self, span: Span, lane: Lane) -> None:
        ft = self.ft
        while (index := self.plan.next_part(span)) is not None:
            size = ft.part_len(index)
            asked = time.monotonic()
            buf = self.engine.pool.acquire(size, ft.cancelled, partial(self._keep_free, index))
            if buf is not None and not _acquire(ft.outstanding, ft.cancelled):
                self.engine.pool.release(buf)
                buf = None
            with self._lock:
                self.memory_wait += time.monotonic() - asked
            if buf is None:
                return
            with self._lock:
                self._granted.add(index)
            self._fill(index, buf, span, lane)

    def _fill(self, index: int, buf: Buffer, span: Span, lane: Lane) -> None:
        """Land part ``index`` through the engine (kept bytes read back, the rest fetched
        from this lane's response, the part written or confirmed), then digest it."""
        ft = self.ft
        view = memoryview(buf)[: ft.part_len(index)]

        def fetch(start: int, into: memoryview, on_bytes: Callable[[int], None]) -> None:
            stream = lane.stream
            watch = self._watch_for_ahead(lane, span, start, on_bytes)
            stream.fill(start, into, lambda: self._span_end_byte(span), watch, ft.on_retry)
            self._measured(stream)

        writer = self._writer if writes_behind(self._latency) else None
        try:
            ft.land(index, view, fetch, keep_on_failure=True, persist=writer is None)
        except BaseException:
            ft.give(buf)
            raise
        if writer is not None:
            with self._lock:
                self.written_behind += 1
            writer.submit(self._write_behind, index, buf, view)
        else:
            ft.complete(index, buf, view)

    def _write_behind(self, index: int, buf: Buffer, view: memoryview) -> None:
        """Persist a fetched part off the lane, which reads on meanwhile, and hand it to the
        digest."""
        ft = self.ft
        try:
            ft.persist(index, view)
        except BaseException as exc:
            ft.keep(index, view)
            ft.give(buf)
            ft.fail(exc if isinstance(exc, XView2Error) else _unexpected(ft.name, exc))
            return
        try:
            ft.complete(index, buf, view)
        except BaseException as exc:
            ft.fail(exc if isinstance(exc, XView2Error) else _unexpected(ft.name, exc))

    def _measured(self, stream: SpanStream) -> None:
        """Learn the round trip (the least request-to-reply time seen) and the lanes'
        streaming rate (:meth:`SpanStream.rate`, averaged), and size the spans to come
        from them: long enough that a round trip is a small share of a span, never longer
        than the memory allows.  On a link without a round trip worth hiding, spans stay
        one part long, as fine-grained for resuming as single-part requests."""
        if stream.latency is not None:
            self._learn_round_trip(stream.latency)
        rate = stream.rate()
        with self._lock:
            if rate is not None:
                self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate
            if self._latency is None or self._rate is None:
                return
            want = SPAN_ROUND_TRIPS * self._rate * self._latency / self.ft.part_size
            self.plan.span_parts = max(1, min(self.memory_parts, math.ceil(want)))

    def _learn_round_trip(self, latency: float) -> None:
        """The round trip is the least reply time seen (request to headers)."""
        with self._lock:
            self._latency = min(self._latency or latency, latency)

    # -- asking ahead --------------------------------------------------------------------
    def _watch_for_ahead(
        self, lane: Lane, span: Span, start: int, on_bytes: Callable[[int], None]
    ) -> Callable[[int], None]:
        """``on_bytes`` for a read from ``start`` of ``span`` that, once the span's bytes
        left would stream in :data:`AHEAD_ROUND_TRIPS` round trips, claims the lane's next
        span and sends its request (see :class:`Lane`)."""
        if lane.asked:
            return on_bytes
        pos, noted = start, False

        def watch(n: int) -> None:
            nonlocal pos, noted
            on_bytes(n)
            pos += n
            # Whether: the least reply time seen, a round trip (a reply on a new
            # connection waits for its handshake too, TLS's on loopback included).
            # When: this lane's last reply time, as loaded as the next one will be.
            latency = lane.stream.latency
            if latency is None or lane.asked:
                return
            if not noted:  # the reply's headers are in: it counts from its first byte
                noted = True
                self._learn_round_trip(latency)
            if not asks_ahead(self._latency):
                return
            rate = self._rate or lane.stream.rate()
            if rate is None:
                return
            if self._span_end_byte(span) - pos <= AHEAD_ROUND_TRIPS * rate * latency:
                self._ask_ahead(lane, span)

        return watch

    def _ask_ahead(self, lane: Lane, span: Span) -> None:
        lane.asked = True  # once per span, whether or not anything is left to claim
        following = None if self.ft.cancelled() else self.plan.claim(self.tuner.ceiling, span)
        if following is None:
            return
        first = following.start * self.ft.part_size + self.ft.kept.get(following.start, 0)
        last = self._span_end_byte(following) - 1
        lane.ask_ahead(following, first, last, self._opened_for(following))

    def _span_end_byte(self, span: Span) -> int:
        assert self.ft.remote is not None and self.ft.remote.size is not None
        return min(self.ft.remote.size, span.end * self.ft.part_size)

    def _keep_free(self, index: int) -> int:
        """Budget a request for ``index`` must leave free: none for the lowest part not
        yet holding a buffer (the digest's next), a part's worth for any other, and all
        of it (wait) while this file already holds the parts its spans need."""
        with self._lock:
            hashed = self.ft.hashed
            self._granted = {i for i in self._granted if i >= hashed}
            if all(i in self._granted for i in range(hashed, index)):
                return 0
            lanes = len(self._threads)
            window = max(self._base_window, lanes * self.plan.span_parts + max(2, lanes // 4))
            if len(self._granted) + 1 >= window:
                return self.engine.pool.budget
        return self.ft.part_size


def _unexpected(name: str, exc: BaseException) -> XView2Error:
    """A bug, logged with its traceback and reported as the file's failure."""
    log.error("fetching or writing a part of %s", name, exc_info=exc)
    return XView2Error.unexpected(exc, file=name)


def _acquire(sem: threading.Semaphore, cancelled: Callable[[], bool]) -> bool:
    while not sem.acquire(timeout=0.2):
        if cancelled():
            return False
    return True
