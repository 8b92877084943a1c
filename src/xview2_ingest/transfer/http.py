"""HTTP: probing a link and fetching byte ranges into preallocated buffers, with retries.

Client choice (measured with ``bench/http_clients.py``, see ``docs/benchmarks.md``):
urllib3.  It is already installed with boto3 (no new dependency), thread-safe connection
pools, honours proxies, and reads large blocks into caller buffers with no per-byte Python
work; one connection on loopback runs at well over 1 GB/s, above SHA-1 speed.  Worker
threads release the GIL while they wait on sockets and while OpenSSL hashes, so threads
beat an event loop here: the hot path is C (recv, memcpy, SHA-1, pwrite).

Bodies are never decoded: we ask for ``identity`` and store the bytes as served, so a
``Content-Encoding: gzip`` header on a ``.tar.gz`` (a classic misconfiguration) cannot
corrupt the file; the checksum decides.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import ContentError, LinkError, LinkExpiredError, ServerError
from ..links import Link
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_QUERY = re.compile(r"\?[^\s\"']*")


def _redact_record(record: logging.LogRecord) -> bool:
    """urllib3 logs request lines with their query string: keep the signature out."""
    message = record.getMessage()
    if "?" in message:
        record.msg, record.args = _QUERY.sub("?<redacted>", message), None
    return True


# A filter, not a handler: it only rewrites what urllib3 would log anyway.
logging.getLogger("urllib3.connectionpool").addFilter(_redact_record)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)
_GZIP_NAMES = (".gz", ".tgz")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    """Tries per range (the first included) before the file fails."""
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    connect_timeout: float = 15.0
    stall_timeout: float = 30.0
    """Seconds without a byte before a connection counts as stalled and is retried."""

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)  # exponential backoff, jittered


@dataclass(frozen=True)
class Remote:
    """What the probe learnt of a file on the server."""

    size: int | None
    ranges: bool
    etag: str | None
    last_modified: str | None
    content_type: str | None

    def identity(self) -> dict[str, object]:
        return {"size": self.size, "etag": self.etag, "last_modified": self.last_modified}


class TransientError(Exception):
    """A failure worth retrying: reset, timeout, stall, short body, 5xx, 429."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PartialRead(TransientError):
    """A body that broke off after ``filled`` good bytes."""

    def __init__(self, message: str, filled: int):
        super().__init__(message)
        self.filled = filled


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _refusal(link: Link, status: int, body: bytes) -> Exception:
    """Classify a 4xx: expiry only when the deadline passed or the server says so."""
    text = body[:4096].decode("utf-8", "replace")
    deadline = link.expires_at
    said_expired = bool(re.search(r"expired", text, re.I))
    if status in (400, 401, 403) and (said_expired or (deadline and deadline <= time.time())):
        when = ""
        if deadline:
            when = f" at {time.strftime('%H:%M:%S', time.localtime(deadline))}"
        return LinkExpiredError(f"the link expired{when} (HTTP {status})", file=link.name)
    if status in (401, 403):
        return LinkError(
            f"access denied (HTTP {status}) although the link has not expired",
            file=link.name,
            hint="copy the link again from the download page; it may be incomplete",
        )
    if status in (404, 410):
        return LinkError(
            f"the server has no such file (HTTP {status})",
            file=link.name,
            hint="check the link's file name",
        )
    return LinkError(f"the server refused the request (HTTP {status})", file=link.name)


class HttpClient:
    def __init__(self, max_connections: int = 32, policy: RetryPolicy | None = None):
        self.policy = policy or RetryPolicy()
        self._pool = urllib3.PoolManager(
            num_pools=64, maxsize=max(4, max_connections), block=False, retries=False
        )
        self._timeout = urllib3.Timeout(
            connect=self.policy.connect_timeout, read=self.policy.stall_timeout
        )
        self.stop = threading.Event()
        self.limiter: RateLimiter | None = None
        """The run's speed cap (``--limit-rate``), shared by every read; None: no cap."""

    def _get(self, link: Link, start: int | None, end: int | None) -> urllib3.BaseHTTPResponse:
        headers = {"Accept-Encoding": "identity", "User-Agent": "xview2-ingest"}
        if start is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            return self._pool.request(
                "GET",
                link.url,
                headers=headers,
                preload_content=False,
                decode_content=False,
                redirect=True,
                timeout=self._timeout,
            )
        except Urllib3Error as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}") from None

    def _check_status(self, link: Link, resp: urllib3.BaseHTTPResponse) -> None:
        if resp.status in (200, 206):
            return
        body = b""
        try:
            body = resp.read(8192)
        except Urllib3Error:
            pass
        finally:
            resp.release_conn()
        if resp.status == 429 or resp.status >= 500:
            raise TransientError(
                f"HTTP {resp.status}", _retry_after(resp.headers.get("Retry-After"))
            )
        raise _refusal(link, resp.status, body)

    def _with_retries(
        self,
        link: Link,
        what: str,
        attempt_fn: Callable[[], None],
        on_retry: Callable[[str], None] | None,
    ) -> None:
        for attempt in range(self.policy.attempts):
            try:
                attempt_fn()
                return
            except TransientError as exc:
                if attempt + 1 >= self.policy.attempts or self.stop.is_set():
                    raise ServerError(
                        f"{what} failed {attempt + 1} times, last: {exc}",
                        file=link.name,
                        hint="the server or network is unwell; run again to resume",
                    ) from None
                delay = self.policy.delay(attempt, exc.retry_after)
                log.info("%s: %s (%s); retrying in %.1fs", link.name, what, exc, delay)
                if on_retry:
                    on_retry(f"{what}: {exc}; retry {attempt + 1} in {delay:.1f}s")
                if self.stop.wait(delay):
                    raise ServerError("interrupted", file=link.name) from None

    def probe(self, link: Link, on_retry: Callable[[str], None] | None = None) -> Remote:
        """One cheap ranged GET: size, Range support, identity; refuses dead links."""
        found: list[Remote] = []

        def attempt() -> None:
            resp = self._get(link, 0, 1)
            self._check_status(link, resp)
            headers = resp.headers
            ctype = headers.get("Content-Type")
            if ctype and ctype.split(";")[0].strip().lower() in (
                "text/html",
                "application/xhtml+xml",
            ):
                resp.close()
                raise ContentError(
                    f"the server sent an HTML page ({ctype}) instead of the file",
                    file=link.name,
                    hint="the link probably leads to a login or error page; copy it again",
                )
            size: int | None = None
            ranges = False
            if resp.status == 206:
                match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != 0:
                    resp.close()
                    raise TransientError(
                        f"asked for bytes 0-1, got {headers.get('Content-Range')!r}"
                    )
                if match.group(3) != "*":
                    size, ranges = int(match.group(3)), True
            if size is None and resp.status == 200 and headers.get("Content-Length"):
                size = int(headers["Content-Length"])
            try:
                head = resp.read(2)
            except Urllib3Error as exc:
                raise TransientError(f"probe body: {type(exc).__name__}") from None
            finally:
                resp.close() if resp.status == 200 else resp.release_conn()
            if link.name.endswith(_GZIP_NAMES) and len(head) == 2 and head != b"\x1f\x8b":
                raise ContentError(
                    "the server's bytes are not gzip data, though the name says so",
                    file=link.name,
                    hint="the link probably leads to an error page; copy it again",
                )
            found.append(
                Remote(size, ranges, headers.get("ETag"), headers.get("Last-Modified"), ctype)
            )

        self._with_retries(link, "probe", attempt, on_retry)
        return found[0]

    def fetch(
        self,
        link: Link,
        remote: Remote,
        start: int,
        into: memoryview,
        on_bytes: Callable[[int], None],
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """Fill ``into`` with the file's bytes from ``start``, retrying what can be retried.

        A retry asks only for the bytes still missing.  The server's reply must be the
        same file (size, ETag/Last-Modified) and exactly the range asked for.
        """
        filled = 0
        total = into.nbytes

        def attempt() -> None:
            nonlocal filled
            first, last = start + filled, start + total - 1
            resp = self._get(link, first, last)
            self._check_status(link, resp)
            keep = False
            try:
                self._check_reply(link, remote, resp, first, last)
                filled += self._read_into(link, resp, into[filled:], on_bytes, first)
                keep = True
            except PartialRead as exc:
                filled += exc.filled
                raise
            finally:
                resp.release_conn() if keep else resp.close()

        self._with_retries(link, f"bytes {start}-{start + total - 1}", attempt, on_retry)

    def _read_into(
        self,
        link: Link,
        resp: urllib3.BaseHTTPResponse,
        into: memoryview,
        on_bytes: Callable[[int], None],
        offset: int,
    ) -> int:
        """Read exactly ``len(into)`` bytes; on a break raise with the count reached."""
        filled, total = 0, into.nbytes
        while filled < total:
            if self.stop.is_set():
                raise ServerError("interrupted", file=link.name)
            want = min(CHUNK, total - filled)
            if self.limiter is not None:  # the speed cap: tokens first, the rest back after
                want = self.limiter.acquire(want, self.stop)
            n = 0
            try:
                n = resp.readinto(into[filled : filled + want])
            except (Urllib3Error, OSError) as exc:
                raise PartialRead(f"connection broke: {type(exc).__name__}", filled) from None
            finally:
                if self.limiter is not None:
                    self.limiter.refund(want - n)
            if n == 0:
                raise PartialRead(f"body ended early at byte {offset + filled}", filled)
            filled += n
            on_bytes(n)
        return filled

    @staticmethod
    def _check_reply(
        link: Link, remote: Remote, resp: urllib3.BaseHTTPResponse, first: int, last: int
    ) -> None:
        headers = resp.headers
        if resp.status == 200:
            raise ServerError(
                "the server stopped honouring Range requests mid-transfer",
                file=link.name,
                hint="run again; the file will restart if the server no longer supports ranges",
            )
        match = _CONTENT_RANGE.match(headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != first or int(match.group(2)) != last:
            raise TransientError(
                f"asked for bytes {first}-{last}, got {headers.get('Content-Range')!r}"
            )
        if match.group(3) != "*" and int(match.group(3)) != remote.size:
            raise ServerError(
                f"the file changed on the server: size {match.group(3)}, was {remote.size}",
                file=link.name,
                hint="run again to restart this file",
            )
        for field, known in (("ETag", remote.etag), ("Last-Modified", remote.last_modified)):
            seen = headers.get(field)
            if known and seen and seen != known:
                raise ServerError(
                    f"the file changed on the server ({field} {seen}, was {known})",
                    file=link.name,
                    hint="run again to restart this file",
                )


class SequentialStream:
    """One plain GET read from start to end, for servers without Range support.

    Parts are filled in order from the same response.  After a break the file is asked
    for again and the bytes before the wanted offset are read and dropped (counted as
    fetched again); ``skip`` does the same when a resumed transfer starts mid-file.
    """

    def __init__(self, client: HttpClient, link: Link):
        self._client, self._link = client, link
        self._resp: urllib3.BaseHTTPResponse | None = None
        self._pos = 0
        self._scratch = bytearray(CHUNK)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def _open(self, start: int, on_bytes: Callable[[int], None]) -> None:
        self.close()
        resp = self._client._get(self._link, None, None)
        self._client._check_status(self._link, resp)
        self._resp, self._pos = resp, 0
        view = memoryview(self._scratch)
        try:
            while self._pos < start:
                want = min(CHUNK, start - self._pos)
                self._pos += self._client._read_into(
                    self._link, resp, view[:want], on_bytes, self._pos
                )
        except PartialRead as exc:
            self.close()
            raise TransientError(str(exc)) from None

    def fill(
        self,
        start: int,
        into: memoryview,
        on_bytes: Callable[[int], None],
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        filled = 0

        def attempt() -> None:
            nonlocal filled
            try:
                if self._resp is None or self._pos != start + filled:
                    self._open(start + filled, on_bytes)
                assert self._resp is not None
                got = self._client._read_into(
                    self._link, self._resp, into[filled:], on_bytes, self._pos
                )
                filled += got
                self._pos += got
            except PartialRead as exc:
                filled += exc.filled
                self.close()
                raise

        self._client._with_retries(
            self._link, f"bytes {start}-{start + into.nbytes - 1}", attempt, on_retry
        )
