"""One lane's HTTP replies: the ranged response a lane reads its span from.

A :class:`SpanStream` holds one response at a time and fills part buffers from it; its
request may be sent ahead of need, from a thread of its own, and the reply is taken up
when the lane gets to it.  :class:`Openers` sends the first lanes' first requests while
the file's probe is still on its way.  Every reply is checked (status, range, the file's
size and identity) before a byte of it is used.
"""

from __future__ import annotations

import dataclasses
import http.client
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import urllib3

from ..errors import ServerError
from ..links import Link
from .http import HttpClient, PartialRead, Remote, TransientError

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
"""Bytes per read into a part buffer: large enough that the loop costs nothing, small
enough that a stop is seen (and the bytes so far kept) within a fraction of a second on
a slow connection."""

MIN_SAMPLE = 0.001
"""Seconds a reply must have streamed after its headers for its own rate to count: a
server that sends its first bytes with the headers delivers a small part at once."""


@dataclass(frozen=True)
class Reply:
    """A ranged reply, its status checked: the bytes ``first``..``last`` follow (checked
    against the file the probe saw once ``checked`` is set)."""

    resp: urllib3.BaseHTTPResponse
    first: int
    last: int
    latency: float
    arrived: float
    """``time.monotonic()`` when the headers were in: the body streams from then on."""
    checked: Remote | None
    """What the reply was checked against (None: only its status, so far)."""


def _close_reply(pending: Future[Reply]) -> None:
    if not pending.cancelled() and pending.exception() is None:
        pending.result().resp.close()


class SpanStream:
    """One lane's current response: the bytes of a span, read part after part.

    Its request may be sent *ahead* (:meth:`ask_ahead`), from a thread of its own while the
    lane still reads its other stream; the first read waits for that reply."""

    def __init__(self, client: HttpClient, link: Link, remote: Remote | None):
        self._client, self._link, self._remote = client, link, remote
        self._resp: urllib3.BaseHTTPResponse | None = None
        self._pos = 0
        self._end = 0
        self._pending: Future[Reply] | None = None
        self.requests = 0
        self.latency: float | None = None
        """Seconds from the last request to its reply's headers (a round trip or more)."""
        self.arrived = 0.0
        """When the current reply's headers came (``time.monotonic()``)."""
        self._got = 0  # bytes read of the current reply

    def close(self) -> None:
        """Drop the response; its connection is reused only if it was read to the end.
        A reply still on its way is closed when it arrives."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.add_done_callback(_close_reply)
        if self._resp is not None:
            if self._pos == self._end:
                self._resp.release_conn()
            else:
                self._resp.close()
            self._resp = None

    def _request(self, first: int, last: int) -> Reply:
        client = self._client
        asked = time.monotonic()
        resp = client.get(self._link, first, last)
        client.check_status(self._link, resp)
        now = time.monotonic()
        reply = Reply(resp, first, last, now - asked, now, None)
        if self._remote is not None:
            return self._checked(reply)
        if resp.status != 206:  # a server that ignores ranges: drop the whole file it sends
            resp.close()
            raise TransientError(f"asked for bytes {first}-{last}, got HTTP {resp.status}")
        return reply

    def _checked(self, reply: Reply) -> Reply:
        """``reply``, checked against the file the probe saw (closed if it is not)."""
        assert self._remote is not None
        try:
            self._client.check_reply(self._link, self._remote, reply.resp, reply.first, reply.last)
        except BaseException:
            reply.resp.close()
            raise
        return dataclasses.replace(reply, checked=self._remote)

    def bind(self, remote: Remote) -> None:
        """Check replies against ``remote`` from now on, one already on its way included
        (a request sent before the probe answered)."""
        self._remote = remote

    def _adopt(self, reply: Reply) -> None:
        self.latency, self.arrived = reply.latency, reply.arrived
        self._resp, self._pos, self._end = reply.resp, reply.first, reply.last + 1
        self._got = 0

    def rate(self) -> float | None:
        """Bytes per second the current reply has brought since its headers came (None
        before its first bytes).

        Counted over the whole reply, not part by part: a part whose bytes waited in the
        socket (the lane was busy or waiting for memory, or the reply was asked for ahead)
        is read at memory speed, and taken alone would make the link look many times
        faster than it is.  A reply that came whole with its headers (in less than
        :data:`MIN_SAMPLE`) says only that the link is at least as fast as its bytes
        over the time since they were asked for."""
        if self._resp is None or not self._got:
            return None
        now = time.monotonic()
        seconds = now - self.arrived
        if seconds <= MIN_SAMPLE:
            seconds = now - (self.arrived - (self.latency or 0.0))
        return self._got / max(seconds, MIN_SAMPLE)

    def _open(self, first: int, last: int) -> None:
        self.close()
        self.requests += 1
        self._adopt(self._request(first, last))

    def ask_ahead(self, first: int, last: int) -> None:
        """Send the request for bytes ``first``..``last`` now, from a thread of its own:
        its reply is on its way while the lane finishes reading its other stream.  (A
        daemon thread: a request to a server that hangs never holds up a stop.)"""
        self.close()
        self.requests += 1
        pending: Future[Reply] = Future()
        pending.set_running_or_notify_cancel()

        def ask() -> None:
            try:
                pending.set_result(self._request(first, last))
            except BaseException as exc:
                pending.set_exception(exc)

        threading.Thread(target=ask, name=f"xview2-ask-{self._link.name}", daemon=True).start()
        self._pending = pending

    def _settle(self) -> None:
        """Take the reply asked for ahead (its failure is this attempt's failure)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        reply = pending.result()
        if reply.checked is not self._remote:
            reply = self._checked(reply)
        self._adopt(reply)

    def _read(self, into: memoryview, on_bytes: Callable[[int], None]) -> int:
        """Read exactly ``len(into)`` bytes straight into the part buffer.

        Through the ``http.client`` response under urllib3's: its ``readinto`` lands the
        bytes with one copy out of the kernel (or out of OpenSSL), where urllib3's own
        makes a new ``bytes`` per read and copies it again (``bench/http_clients.py``).
        That also keeps a megabyte of garbage per read and connection out of the peak
        memory.  On a break, :class:`PartialRead` carries the count reached.
        """
        assert self._resp is not None

        def counted(n: int) -> None:
            self._got += n
            on_bytes(n)

        fp = getattr(self._resp, "_fp", None)
        if not isinstance(fp, http.client.HTTPResponse):
            return self._client.read_into(self._link, self._resp, into, counted, self._pos)
        filled, total = 0, into.nbytes
        limiter = self._client.limiter
        while filled < total:
            if self._client.stop.is_set():
                raise ServerError("interrupted", file=self._link.name)
            want = min(READ_SIZE, total - filled)
            if limiter is not None:  # the speed cap: tokens first, the rest back after
                want = limiter.acquire(want, self._client.stop)
            n = 0
            try:
                n = fp.readinto(into[filled : filled + want]) or 0
            except (OSError, ValueError, http.client.HTTPException) as exc:
                raise PartialRead(f"connection broke: {type(exc).__name__}", filled) from None
            finally:
                if limiter is not None:
                    limiter.refund(want - n)
            if not n:
                raise PartialRead(f"body ended early at byte {self._pos + filled}", filled)
            filled += n
            counted(n)
        return filled

    def fill(
        self,
        start: int,
        into: memoryview,
        span_end: Callable[[], int],
        on_bytes: Callable[[int], None],
        on_retry: Callable[[str], None] | None,
    ) -> None:
        """Fill ``into`` with the file's bytes from ``start``: from the open response
        when it is there, else from a new request that runs to ``span_end()``."""
        filled = 0

        def attempt() -> None:
            nonlocal filled
            at = start + filled
            self._settle()
            if self._resp is None or self._pos != at:
                self._open(at, max(span_end(), start + into.nbytes) - 1)
            assert self._resp is not None
            try:
                got = self._read(into[filled:], on_bytes)
            except PartialRead as exc:
                filled += exc.filled
                self._pos += exc.filled
                self._resp.close()
                self._resp = None
                raise
            filled += got
            self._pos += got

        try:
            self._client.with_retries(
                self._link, f"bytes {start}-{start + into.nbytes - 1}", attempt, on_retry
            )
        except BaseException:
            if self._resp is not None:
                self._resp.close()
                self._resp = None
            raise


class Openers:
    """The lanes' first requests, sent while the probe is on its way.

    A lane may ask for bytes only once the probe has answered, a round trip after its
    request; over a WAN that is a round trip for every file before its first byte.  The
    catalog gives a file's size (or near enough to plan its parts), so the first span of
    each of the first lanes is known before the probe answers: one part each, in order.
    Those requests go out as soon as enough of the lanes' connections are open (direct
    connections: through a proxy none are opened ahead, and nothing goes early), each
    reply checked only for its status until a lane takes it up (:meth:`take`), bound to
    what the probe saw and checked against it.  Each is a span of its own, so a lane
    claims exactly its bytes; one no lane took up is closed by :meth:`close`.  Only a
    file with no upload to resume sends them: its first parts are not yet here.
    """

    def __init__(
        self,
        client: HttpClient,
        link: Link,
        part: int,
        size: int,
        count: int,
        fresh: Callable[[], bool],
    ):
        """The first part of each of ``count`` lanes, for a file of ``size`` bytes in
        parts of ``part``; ``fresh()`` says whether the file starts from nothing (a
        resumed file begins elsewhere, and these replies would be thrown away)."""
        self._client, self._link, self._fresh = client, link, fresh
        self._ranges = [
            (first, min(size, first + part) - 1)
            for first in range(0, min(size, count * part), part)
        ]
        self._lock = threading.Lock()
        self._streams: dict[tuple[int, int], SpanStream] = {}
        self._connected = 0
        self._sealed = False
        self.sent = 0

    def connected(self) -> None:
        """One more of the lanes' connections is open: once there is one for each
        request, send them, if the file starts fresh and the lanes have not begun."""
        with self._lock:
            self._connected += 1
            if self._sealed or self._connected != len(self._ranges):
                return
        if not self._fresh():  # (may wait for the destination's listing)
            return
        with self._lock:
            if self._sealed:
                return
            for first, last in self._ranges:
                stream = SpanStream(self._client, self._link, None)
                stream.ask_ahead(first, last)
                self._streams[(first, last)] = stream
            self.sent = len(self._ranges)
        log.debug("%s: %d requests sent with the probe", self._link.name, self.sent)

    def seal(self) -> None:
        """Send nothing from now on: the probe has answered, and lanes that begin ask
        for their bytes themselves."""
        with self._lock:
            self._sealed = True

    def firsts(self) -> list[int]:
        """The first bytes of the requests sent (none if none were)."""
        with self._lock:
            return [first for first, _ in self._ranges] if self.sent else []

    def take(self, first: int, last: int, remote: Remote) -> SpanStream | None:
        """The request sent for exactly bytes ``first``..``last``, bound to ``remote``."""
        with self._lock:
            stream = self._streams.pop((first, last), None)
        if stream is not None:
            stream.bind(remote)
        return stream

    def close(self) -> None:
        """Close the requests no lane took up; send none from now on."""
        with self._lock:
            self._sealed = True
            left, self._streams = list(self._streams.values()), {}
        for stream in left:
            stream.close()
