"""HTTP: probing a link and fetching byte ranges into preallocated buffers, with retries.

Client choice (measured with ``bench/http_clients.py``, see ``docs/benchmarks.md``):
urllib3.  It is already installed with boto3 (no new dependency), thread-safe connection
pools, honours proxies, and reads large blocks into caller buffers with no per-byte Python
work; one connection is faster than SHA-1 (figures in ``docs/benchmarks.md``).  Worker
threads release the GIL while they wait on sockets and while OpenSSL hashes, so threads
beat an event loop here: the hot path is C (recv, memcpy, SHA-1, pwrite).

Bodies are never decoded: we ask for ``identity`` and store the bytes as served, so a
``Content-Encoding: gzip`` header on a ``.tar.gz`` (a classic misconfiguration) cannot
corrupt the file; the checksum decides.

As users expect of an HTTP client: up to :data:`MAX_REDIRECTS` redirects are followed
(every request starts again from the signed link, so a short-lived redirect target is
never reused; the file's identity is checked on what the final URL serves); proxies come
from the environment as curl reads it (:mod:`.proxies`); a connection failure names the
host, port and reason, and the probe stops trying within ``RetryPolicy.connect_budget``;
a malformed ``Retry-After`` falls back to backoff; and when a server's ``Date`` shows this
machine's clock is off by over a minute, expiry is judged by the server's clock
(:data:`~xview2_ingest.links.server_clocks`) and the skew is reported once.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import ContentError, LinkError, LinkExpiredError, ServerError
from ..events import Event, ProgressCallback, no_progress
from ..links import Link, redact, server_clocks
from . import tls
from .proxies import Proxy, ProxySettings
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
for _name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_redact_record)
MAX_REDIRECTS = 5
"""Redirects followed per request, as browsers and curl's ``-L`` allow a handful."""
_REDIRECTS = (301, 302, 303, 307, 308)
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
    connect_budget: float = 15.0
    """Seconds the probe keeps trying a server it cannot connect to before giving up."""

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
    """A failure worth retrying: reset, timeout, stall, short body, 5xx, 429.

    ``connect`` marks a connection that could not be made at all (refused, no such
    host, no answer): the probe gives those only ``RetryPolicy.connect_budget`` seconds.
    """

    def __init__(self, message: str, retry_after: float | None = None, *, connect: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.connect = connect


class PartialRead(TransientError):
    """A body that broke off after ``filled`` good bytes."""

    def __init__(self, message: str, filled: int):
        super().__init__(message)
        self.filled = filled


def _http_date(value: str | None) -> float | None:
    """An HTTP date as a Unix time; None when absent or malformed."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _retry_after(value: str | None, server_now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (seconds, or an HTTP date judged by the
    server's ``Date`` when given); None (so: backoff) when absent or malformed."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        if when is None:
            log.debug("malformed Retry-After %r; backing off instead", value[:40])
            return None
        return max(0.0, when - (time.time() if server_now is None else server_now))
    if not math.isfinite(seconds) or seconds < 0:
        log.debug("malformed Retry-After %r; backing off instead", value[:40])
        return None
    return seconds


def _refusal(link: Link, status: int, body: bytes) -> Exception:
    """Classify a 4xx: expiry only when the deadline passed or the server says so.

    The deadline is judged by the server's clock when ours is known to be off.
    """
    text = body[:4096].decode("utf-8", "replace")
    deadline = link.expires_at
    said_expired = bool(re.search(r"expired", text, re.I))
    now = server_clocks.now_for(link.url)
    if status in (400, 401, 403) and (said_expired or (deadline and deadline <= now)):
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


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def _os_reason(exc: BaseException | None) -> str | None:
    """The first operating-system reason in an exception's chain ("connection refused")."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror):
            return f"host name not found ({exc.strerror})" if exc.strerror else None
        if isinstance(exc, OSError) and exc.errno:
            return os.strerror(exc.errno).lower()
        exc = exc.__cause__ or exc.__context__
    return None


def describe_failure(
    exc: Exception, url: str, proxy: Proxy | None, policy: RetryPolicy
) -> TransientError:
    """A retryable error that names the host and port (or proxy) and the reason."""
    target = _host_port(url)
    if isinstance(exc, ProxyError):
        where = f"the proxy {_host_port(proxy.url)} (from {proxy.variable})" if proxy else "proxy"
        reason = _os_reason(exc) or _QUERY.sub("", str(exc.__cause__ or exc))[:200]
        return TransientError(f"cannot connect to {where}: {reason}", connect=True)
    if isinstance(exc, NameResolutionError):
        return TransientError(f"cannot connect to {target}: host name not found", connect=True)
    if isinstance(exc, NewConnectionError):
        reason = _os_reason(exc) or "connection failed"
        return TransientError(f"cannot connect to {target}: {reason}", connect=True)
    if isinstance(exc, ConnectTimeoutError):
        reason = f"no answer within {policy.connect_timeout:g}s"
        return TransientError(f"cannot connect to {target}: {reason}", connect=True)
    if isinstance(exc, ReadTimeoutError):
        return TransientError(f"{target} sent nothing for {policy.stall_timeout:g}s")
    if isinstance(exc, SSLError):
        reason = _QUERY.sub("", str(exc.__cause__ or exc))[:200]
        return TransientError(f"TLS with {target} failed: {reason}")
    if isinstance(exc, ProtocolError):
        return TransientError(f"the connection to {target} broke: {_os_reason(exc) or 'reset'}")
    return TransientError(f"connection to {target} failed: {type(exc).__name__}")


class HttpClient:
    """Probes and ranged GETs for the engine; one per run (proxies are read once).

    ``progress`` receives ``info`` events (a server clock that is off); the engine's
    callback, which must be quick and thread-safe.
    """

    def __init__(
        self,
        max_connections: int = 32,
        policy: RetryPolicy | None = None,
        progress: ProgressCallback | None = None,
        *,
        ca_bundle: str | None = None,
    ):
        self.policy = policy or RetryPolicy()
        self.progress = progress or no_progress
        self.ca_bundle = ca_bundle
        self._proxies = ProxySettings()  # a malformed proxy variable is a usage error now
        # Two per connection: a lane keeps a spare for the request it sends ahead.
        self._maxsize = max(4, 2 * max_connections)
        self._pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=self._maxsize,
            block=False,
            retries=False,
            **tls.pool_options(ca_bundle),
        )
        self._proxy_pools: dict[Proxy, urllib3.ProxyManager] = {}
        self._pools_lock = threading.Lock()
        self._timeout = urllib3.Timeout(
            connect=self.policy.connect_timeout, read=self.policy.stall_timeout
        )
        self.stop = threading.Event()
        self.limiter: RateLimiter | None = None
        """The run's speed cap (``--limit-rate``), shared by every read; None: no cap."""

    def _manager(self, url: str) -> tuple[urllib3.PoolManager, Proxy | None]:
        """The pool for ``url``: direct, or through the proxy the environment names."""
        proxy = self._proxies.for_url(url)
        if proxy is None:
            return self._pool, None
        with self._pools_lock:
            manager = self._proxy_pools.get(proxy)
            if manager is None:
                headers = urllib3.make_headers(proxy_basic_auth=proxy.auth) if proxy.auth else None
                manager = urllib3.ProxyManager(
                    proxy.url,
                    num_pools=64,
                    proxy_headers=headers,
                    maxsize=self._maxsize,
                    block=False,
                    retries=False,
                    **tls.pool_options(self.ca_bundle),
                )
                self._proxy_pools[proxy] = manager
                log.info("connecting through the proxy %s (from %s)", proxy.url, proxy.variable)
        return manager, proxy

    def warm(self, link: Link, count: int, connected: Callable[[], None] | None = None) -> None:
        """Open up to ``count`` connections to the link's server in the background, for
        the lanes that start once the probe has answered; ``connected()`` is called as
        each is made and back in the pool.

        A new connection costs a round trip (TCP), or two (TLS), before its first byte;
        opened while the probe is on its way, that wait is spent once, in parallel,
        instead of after the probe.  Only direct connections are warmed (through a proxy
        the tunnel is made by the request); a failure here is left to the requests that
        follow, which report it.  urllib3 has no public call to fill its pool, so this
        takes a connection from it and gives it back connected
        (``HTTPConnectionPool._get_conn`` / ``_put_conn``)."""
        manager, proxy = self._manager(link.url)
        if proxy is not None or count <= 0:
            return
        try:
            pool = manager.connection_from_url(link.url)
        except Urllib3Error:
            return  # the probe says what is wrong with the address
        taken, put = getattr(pool, "_get_conn", None), getattr(pool, "_put_conn", None)
        if taken is None or put is None:
            return

        def connect(conn: Any) -> None:
            try:
                if not conn.is_connected:
                    conn.connect()
            except (OSError, Urllib3Error) as exc:
                log.debug("%s: warming a connection: %s", link.name, type(exc).__name__)
                conn.close()
                put(conn)
                return
            put(conn)
            if connected is not None:
                connected()

        # All taken before any is given back, or the pool would hand one out twice.
        for conn in [taken() for _ in range(min(count, self._maxsize))]:
            opener = threading.Thread(target=connect, args=(conn,), name="xview2-connect")
            opener.daemon = True
            opener.start()

    def _request(self, link: Link, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        manager, proxy = self._manager(url)
        try:
            return manager.request(
                "GET",
                url,
                headers=headers,
                preload_content=False,
                decode_content=False,
                redirect=False,
                retries=False,
                timeout=self._timeout,
            )
        except LocationValueError:
            raise LinkError(
                f"the server sent an unusable address: {redact(url)}", file=link.name
            ) from None
        except Urllib3Error as exc:
            if isinstance(exc, urllib3.exceptions.SSLError) and tls.is_verification_failure(exc):
                raise tls.tls_failure(link, exc, self.ca_bundle) from None
            raise describe_failure(exc, url, proxy, self.policy) from None

    def get(self, link: Link, start: int | None, end: int | None) -> urllib3.BaseHTTPResponse:
        """GET the link (a range of it), following up to :data:`MAX_REDIRECTS` redirects."""
        headers = {"Accept-Encoding": "identity", "User-Agent": "xview2-ingest"}
        if start is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        url = link.url
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._request(link, url, headers)
            self._note_clock(link, resp)
            if resp.status not in _REDIRECTS:
                return resp
            url = self._follow(link, url, resp)
        raise LinkError(
            f"more than {MAX_REDIRECTS} redirects (the last to {redact(url)})",
            file=link.name,
            hint="the link leads into a redirect loop; copy it again from the download page",
        )

    @staticmethod
    def _follow(link: Link, url: str, resp: urllib3.BaseHTTPResponse) -> str:
        """Where a redirect leads, checked; the response is drained for reuse."""
        location = resp.headers.get("Location")
        try:
            resp.drain_conn()
        except Urllib3Error:
            resp.close()
        resp.release_conn()
        target = urljoin(url, location or "")
        try:
            parts = urlsplit(target)
            ok = bool(location) and parts.scheme in ("http", "https") and bool(parts.hostname)
            ok = ok and parts.port != 0
        except ValueError:
            ok = False
        if not ok:
            raise LinkError(
                f"the server redirected (HTTP {resp.status}) to an unusable address "
                f"{redact(target) if location else '(none given)'}",
                file=link.name,
                hint="copy the link again from the download page",
            )
        log.debug("%s: HTTP %d redirect to %s", link.name, resp.status, redact(target))
        return target

    def _note_clock(self, link: Link, resp: urllib3.BaseHTTPResponse) -> None:
        """Compare the server's ``Date`` with our clock; report a skew over a minute."""
        server_time = _http_date(resp.headers.get("Date"))
        if server_time is None:
            return
        skew = server_time - time.time()
        if not server_clocks.note(link.url, skew):
            return
        ahead = "ahead of" if skew > 0 else "behind"
        detail = (
            f"the clock of {_host_port(link.url)} is {_duration(abs(skew))} {ahead} this "
            "machine's; link expiry is judged by the server's clock"
        )
        log.warning("%s: %s", link.name, detail)
        self.progress(Event("info", link.name, detail=detail))

    def check_status(self, link: Link, resp: urllib3.BaseHTTPResponse) -> None:
        """Refuse a reply that is not the file (200 or 206): expired or refused links,
        missing files and throttling each raise their own error; 5xx is transient."""
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
            server_now = _http_date(resp.headers.get("Date"))
            raise TransientError(
                f"HTTP {resp.status}", _retry_after(resp.headers.get("Retry-After"), server_now)
            )
        if resp.status in _REDIRECTS:  # only after MAX_REDIRECTS; get says so first
            raise LinkError(f"too many redirects (HTTP {resp.status})", file=link.name)
        raise _refusal(link, resp.status, body)

    def with_retries(
        self,
        link: Link,
        what: str,
        attempt_fn: Callable[[], None],
        on_retry: Callable[[str], None] | None,
        connect_budget: float | None = None,
    ) -> None:
        """Run ``attempt_fn`` until it succeeds, retrying transient failures with backoff.

        With ``connect_budget``, failures to connect at all stop once retrying would run
        past that many seconds: a server that is down is reported quickly.
        """
        started = time.monotonic()
        for attempt in range(self.policy.attempts):
            try:
                attempt_fn()
                return
            except TransientError as exc:
                delay = self.policy.delay(attempt, exc.retry_after)
                elapsed = time.monotonic() - started
                if exc.connect and connect_budget is not None and elapsed + delay > connect_budget:
                    raise ServerError(
                        f"{exc} (tried {attempt + 1} times in {elapsed:.0f}s)",
                        file=link.name,
                        hint="check that the server is up, that the link's host and port "
                        "are right, and any HTTPS_PROXY/HTTP_PROXY/NO_PROXY setting; then "
                        "run again",
                    ) from None
                if attempt + 1 >= self.policy.attempts or self.stop.is_set():
                    raise ServerError(
                        f"{what} failed {attempt + 1} times, last: {exc}",
                        file=link.name,
                        hint="the server or network is unwell; run again to resume",
                    ) from None
                log.info("%s: %s (%s); retrying in %.1fs", link.name, what, exc, delay)
                if on_retry:
                    on_retry(f"{what}: {exc}; retry {attempt + 1} in {delay:.1f}s")
                if self.stop.wait(delay):
                    raise ServerError("interrupted", file=link.name) from None

    def probe(self, link: Link, on_retry: Callable[[str], None] | None = None) -> Remote:
        """One cheap ranged GET: size, Range support, identity; refuses dead links."""
        found: list[Remote] = []

        def attempt() -> None:
            resp = self.get(link, 0, 1)
            self.check_status(link, resp)
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
            length = headers.get("Content-Length", "")
            if size is None and resp.status == 200 and length.strip().isdigit():
                size = int(length)
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

        self.with_retries(link, "probe", attempt, on_retry, self.policy.connect_budget)
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
            resp = self.get(link, first, last)
            self.check_status(link, resp)
            keep = False
            try:
                self.check_reply(link, remote, resp, first, last)
                filled += self.read_into(link, resp, into[filled:], on_bytes, first)
                keep = True
            except PartialRead as exc:
                filled += exc.filled
                raise
            finally:
                resp.release_conn() if keep else resp.close()

        self.with_retries(link, f"bytes {start}-{start + total - 1}", attempt, on_retry)

    def read_into(
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
    def check_reply(
        link: Link, remote: Remote, resp: urllib3.BaseHTTPResponse, first: int, last: int
    ) -> None:
        """Refuse a ranged reply that is not bytes ``first``..``last`` of the file the
        probe saw (``remote``: its size, ETag and Last-Modified)."""
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


def _duration(seconds: float) -> str:
    """``3h 2m``, ``5m 10s``, ``42s``: a clock skew as people say it."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


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
        resp = self._client.get(self._link, None, None)
        self._client.check_status(self._link, resp)
        self._resp, self._pos = resp, 0
        view = memoryview(self._scratch)
        try:
            while self._pos < start:
                want = min(CHUNK, start - self._pos)
                self._pos += self._client.read_into(
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
                got = self._client.read_into(
                    self._link, self._resp, into[filled:], on_bytes, self._pos
                )
                filled += got
                self._pos += got
            except PartialRead as exc:
                filled += exc.filled
                self.close()
                raise

        self._client.with_retries(
            self._link, f"bytes {start}-{start + into.nbytes - 1}", attempt, on_retry
        )
