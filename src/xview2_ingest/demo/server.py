"""A local web server that hands out CloudFront-style signed, expiring links.

It serves files from a folder with full single-range support (206, ``Content-Range``,
ETag, Last-Modified, 416), and checks ``Expires``/``Signature``/``Key-Pair-Id`` like
CloudFront: a request that starts after ``Expires`` gets ``403`` with an XML body.  A
transfer already under way keeps going.  :class:`Faults` makes it misbehave on purpose
for the fault-injection tests.  Used by ``xview2 demo``, the tests and the benchmarks;
it only ever listens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

from werkzeug.datastructures import Range
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import ClosingIterator

log = logging.getLogger(__name__)

KEY_PAIR_ID = "APKADEMOKEYPAIR0000"
_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access denied</Message></Error>"
)


@dataclass
class Faults:
    """Ways to misbehave.  Counters apply to file requests (the probe included)."""

    ignore_range: bool = False
    """Answer 200 with the whole file to every Range request."""
    status_first: list[int] = field(default_factory=list)
    """Statuses to return instead of the file for the first requests, in order (e.g. 503)."""
    retry_after: int | str | None = None
    """The ``Retry-After`` header sent with ``status_first`` (a string may be malformed)."""
    reset_after: int | None = None
    """Cut the connection after this many body bytes ..."""
    reset_count: int = 0
    """... for this many requests."""
    stall_seconds: float = 0.0
    stall_count: int = 0
    stall_at: int | None = None
    """Also stall once, for ``stall_seconds``, just before sending this byte of the file,
    whichever request carries it."""
    rate: int | None = None
    """Bytes per second per connection."""
    latency: float = 0.0
    """Seconds before answering each file request, as a round trip over a WAN would."""
    corrupt: bool = False
    """Serve other bytes than the file's (same length)."""
    html: bool = False
    """Serve an HTML error page with 200 instead of the file."""
    wrong_range: int = 0
    """For this many requests, answer a Range request with the wrong range."""
    content_encoding: str | None = None
    expire_after_requests: int | None = None
    """Treat every link as expired once this many file requests were served."""
    requests: int = 0
    clock_offset: float = 0.0
    """Seconds this server's clock is ahead of the machine's (behind when negative): its
    ``Date`` header, the expiry check and the links it signs all follow it."""
    redirects: int = 0
    """Answer each signed request with this many chained redirects (302) before serving."""
    redirect_to: str | None = None
    """A base URL (another server with the same secret): the last redirect goes there."""

    def take(self, attr: str) -> bool:
        value = getattr(self, attr)
        if value > 0:
            setattr(self, attr, value - 1)
            return True
        return False


class _QuietHandler(WSGIRequestHandler):
    """Never log request lines: they carry the links' signatures."""

    def log(self, type: str, message: str, *args: object) -> None:
        log.debug("demo server: %s", type)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header, by the server's own (possibly skewed) clock."""
        clock = getattr(self.server, "clock", time.time)
        return super().date_time_string(clock() if timestamp is None else timestamp)


class SignedLinkServer:
    """Serve ``root`` on 127.0.0.1 behind signed links; use as a context manager."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        ttl: float = 600,
        secret: bytes = b"xview2-demo-secret",
        faults: Faults | None = None,
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.root = Path(root)
        self.ttl = ttl
        self.secret = secret
        self.faults = faults or Faults()
        self._lock = threading.Lock()
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1",
            port,
            self._app,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=ssl_context,
        )
        self._scheme = "https" if ssl_context is not None else "http"
        self._server.clock = self.now  # type: ignore[attr-defined]
        accept = self._server.get_request

        def counted() -> tuple[Any, Any]:
            got = accept()
            with self._lock:
                self.connections += 1
            return got

        self._server.get_request = counted  # type: ignore[method-assign]
        self.connections = 0
        """TCP connections accepted."""
        self._thread: threading.Thread | None = None
        self.hits = 0
        """Every request that reached the server, refused ones and redirects included."""
        self.requests: list[tuple[str, str | None]] = []
        """(path, Range header) of every file request, for tests."""
        self.request_times: list[float] = []
        """When each of :attr:`requests` arrived (``time.monotonic()``)."""
        self.bytes_served = 0
        """Body bytes handed to the network, all requests together."""
        self.open_requests = 0
        self.peak_open_requests = 0
        """The most requests open at once, each from its arrival to the end of its answer."""

    # -- links -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_port}"

    def now(self) -> float:
        """The time by this server's clock (``Faults.clock_offset`` off the machine's)."""
        return time.time() + self.faults.clock_offset

    def _signature(self, path: str, expires: int) -> str:
        mac = hmac.new(self.secret, f"{path}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=").replace("-", "~")

    def url_for(self, name: str, ttl: float | None = None, expires: int | None = None) -> str:
        path = "/" + quote(name)
        if expires is None:
            expires = int(self.now() + (self.ttl if ttl is None else ttl))
        sig = self._signature(path, expires)
        return f"{self.base_url}{path}?Expires={expires}&Signature={sig}&Key-Pair-Id={KEY_PAIR_ID}"

    def links_text(self, names: list[str] | None = None, ttl: float | None = None) -> str:
        names = names if names is not None else sorted(p.name for p in self.root.iterdir())
        return "".join(self.url_for(n, ttl) + "\n" for n in names)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> SignedLinkServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SignedLinkServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------
    def _denied(self) -> Response:
        return Response(_DENIED, status=403, content_type="application/xml")

    def _app(self, environ, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        with self._lock:
            self.hits += 1
            self.open_requests += 1
            self.peak_open_requests = max(self.peak_open_requests, self.open_requests)
        try:
            response = self._handle(request)
            body = response(environ, start_response)
        except BaseException:
            self._answered()
            raise
        return ClosingIterator(body, [self._answered])

    def _answered(self) -> None:
        with self._lock:
            self.open_requests -= 1

    def _handle(self, request: Request) -> Response:
        path = request.path
        args = request.args
        try:
            expires = int(args.get("Expires", ""))
        except ValueError:
            return self._denied()
        if args.get("Key-Pair-Id") != KEY_PAIR_ID or not hmac.compare_digest(
            args.get("Signature", ""), self._signature(quote(path), expires)
        ):
            return self._denied()
        faults = self.faults
        hop = request.args.get("hop", "0")
        if hop.isdigit() and int(hop) < faults.redirects:
            return self._redirect(request, int(hop) + 1)
        with self._lock:
            faults.requests += 1
            count = faults.requests
            self.requests.append((path, request.headers.get("Range")))
            self.request_times.append(time.monotonic())
            status = faults.status_first.pop(0) if faults.status_first else None
            reset = faults.take("reset_count")
            stall = faults.take("stall_count")
            wrong = faults.take("wrong_range")
        if faults.latency:
            time.sleep(faults.latency)
        if self.now() > expires or (
            faults.expire_after_requests is not None and count > faults.expire_after_requests
        ):
            return self._denied()
        file = (self.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.root.resolve()) or not file.is_file():
            return Response(
                b"<Error><Code>NoSuchKey</Code></Error>", 404, content_type="application/xml"
            )
        if status is not None:
            headers = (
                {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
            )
            return Response(b"<Error>try later</Error>", status, headers=headers)
        if faults.html:
            return Response(
                b"<!DOCTYPE html><html><body>Please log in</body></html>",
                200,
                content_type="text/html; charset=utf-8",
            )
        return self._serve(request, file, reset=reset, stall=stall, wrong=wrong)

    def _redirect(self, request: Request, hop: int) -> Response:
        """A 302 to the same signed link with ``hop`` counted up; the last one goes to
        ``Faults.redirect_to`` when set."""
        base = self.base_url
        if hop == self.faults.redirects and self.faults.redirect_to:
            base = self.faults.redirect_to.rstrip("/")
        query = "&".join(
            f"{quote(k)}={quote(v, safe='~')}" for k, v in request.args.items() if k != "hop"
        )
        location = f"{base}{quote(request.path)}?{query}&hop={hop}"
        return Response(b"", 302, headers={"Location": location})

    def _serve(
        self, request: Request, file: Path, *, reset: bool, stall: bool, wrong: bool
    ) -> Response:
        faults = self.faults
        st = file.stat()
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": formatdate(st.st_mtime, usegmt=True),
            "Content-Type": "application/gzip"
            if file.name.endswith(("gz", "tgz"))
            else "application/octet-stream",
        }
        if faults.content_encoding:
            headers["Content-Encoding"] = faults.content_encoding
        start, end, status = 0, size, 200
        rng = request.range if not faults.ignore_range else None
        if rng is not None:
            bounds = rng.range_for_length(size) if isinstance(rng, Range) else None
            if bounds is None:
                return Response(b"", 416, headers={"Content-Range": f"bytes */{size}"})
            start, end = bounds
            status = 206
            shown = (start + 1, end + 1) if wrong else (start, end)
            headers["Content-Range"] = f"bytes {shown[0]}-{shown[1] - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        body = self._body(file, start, end, reset=reset, stall=stall)
        return Response(body, status, headers=headers, direct_passthrough=True)

    def _body(
        self, file: Path, start: int, end: int, *, reset: bool, stall: bool
    ) -> Iterator[bytes]:
        faults = self.faults
        chunk = 256 * 1024
        sent = 0
        began = time.monotonic()
        with open(file, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos < end:
                data = fh.read(min(chunk, end - pos))
                if not data:
                    break
                if faults.corrupt and len(data) > 1024:
                    data = data[:512] + bytes(b ^ 0x5A for b in data[512:528]) + data[528:]
                if (
                    reset
                    and faults.reset_after is not None
                    and sent + len(data) > faults.reset_after
                ):
                    keep = max(0, faults.reset_after - sent)
                    if keep:
                        with self._lock:
                            self.bytes_served += keep
                        yield data[:keep]
                    raise ConnectionResetError("fault injection: reset")
                if stall and sent >= (end - start) // 2:
                    time.sleep(faults.stall_seconds)
                    stall = False
                if faults.stall_at is not None and pos <= faults.stall_at < pos + len(data):
                    with self._lock:
                        at, faults.stall_at = faults.stall_at, None
                    if at is not None:
                        time.sleep(faults.stall_seconds)
                if faults.rate:  # pace before sending, so no chunk goes out early
                    ahead = (sent + len(data)) / faults.rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
                with self._lock:
                    self.bytes_served += len(data)
                yield data
                sent += len(data)
                pos += len(data)
