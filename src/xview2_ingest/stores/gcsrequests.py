"""The GCS JSON API requests the store sends itself: retried, checked, and the resumable
uploads that carry a group of parts (:mod:`.groups`).

Requests that hit a rate limit (429) or a passing server error (5xx) are retried with
backoff: every request sent through :func:`retrying` is safe to repeat (a part rewritten
under its own name, a chunk sent again at the same offset of its upload, a compose into
a fresh name, a delete).  A chunk the server took only in part (a 308 whose ``Range``
ends early, as real GCS may answer) is sent on from where it stopped.

What fake-gcs-server cannot show: it appends every chunk whatever its offset, and a
status query (``Content-Range: bytes */*``) finalizes its upload with what it holds, so
no status query is made here; a chunk that fails past the retries fails its group's
upload (and the file), and the rerun resumes from the last finished part object.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests
from google.api_core import exceptions as gexc

from ..errors import DestinationError

log = logging.getLogger(__name__)

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
ATTEMPTS = 7
CHUNK_ALIGN = 256 * 1024
"""A resumable upload takes chunks in multiples of this (all but the last)."""
CHUNK_TRIES = 4
"""Sends of one chunk that the server may take only in part before the upload fails."""
T = TypeVar("T")


class Retryable(Exception):
    """A reply that asks to be tried again later (429, 5xx)."""

    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def retrying(what: str, call: Callable[[], T]) -> T:
    """``call()``, repeated with backoff on a rate limit, a 5xx or a broken connection."""
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except (requests.ConnectionError, requests.Timeout, Retryable) as exc:
            if attempt == ATTEMPTS - 1:
                raise
            delay = min(32.0, 0.5 * 2**attempt) * (0.5 + random.random())
            log.info("%s failed (%s); retrying in %.1fs", what, exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def checked(response: requests.Response) -> requests.Response:
    """``response``, or the error it is: :class:`Retryable`, or the API's own."""
    if response.status_code in RETRYABLE:
        raise Retryable(response)
    if response.status_code >= 400:
        raise gexc.from_http_response(response)
    return response


def start_resumable(
    session: requests.Session, endpoint: str, bucket: str, key: str, size: int
) -> str:
    """Open a resumable upload of ``size`` bytes to ``key``; its session URL.

    The URL the server gives is checked (this bucket's upload path, an ``upload_id``)
    and taken on ``endpoint``, which alone is trusted."""
    url = f"{endpoint}/upload/storage/v1/b/{bucket}/o"
    params = {"uploadType": "resumable", "name": key}
    headers = {"X-Upload-Content-Length": str(size)}
    reply = retrying(
        f"start of {key}",
        lambda: checked(session.post(url, params=params, json={}, headers=headers, timeout=60)),
    )
    where = urlsplit(reply.headers.get("Location", ""))
    path = f"/upload/storage/v1/b/{quote(bucket, safe='')}/o"
    if unquote(where.path) != unquote(path) or not parse_qs(where.query).get("upload_id"):
        raise DestinationError(
            f"the server opened an upload at an unexpected place ({where.path!r})", file=key
        )
    return f"{endpoint}{where.path}?{where.query}"


def put_chunk(
    session: requests.Session,
    url: str,
    offset: int,
    data: memoryview,
    total: int | None,
    name: str,
) -> int | None:
    """Send ``data`` at ``offset`` of the resumable upload at ``url``; with ``total`` (the
    object's size, this being its last chunk), the finished object's generation."""
    end = offset + data.nbytes
    for _ in range(CHUNK_TRIES):
        size = "*" if total is None else str(total)
        headers = {"Content-Range": f"bytes {offset}-{end - 1}/{size}"}

        def put(body: memoryview = data, headers: dict[str, str] = headers) -> Any:
            return checked(
                session.put(url, data=body, headers=headers, allow_redirects=False, timeout=300)
            )

        reply = retrying(f"bytes {offset:,}-{end - 1:,} of {name}", put)
        if reply.status_code in (200, 201):
            return _finished(reply, total, name)
        kept = _persisted(reply)
        if reply.status_code != 308 or kept is None or not offset <= kept <= end:
            raise DestinationError(
                f"the server answered {reply.status_code} (holding {kept} bytes) to bytes"
                f" {offset:,}-{end - 1:,} of {name}",
                file=name,
                hint="run again to resume from the last finished part object",
            )
        if kept == end:
            if total is None:
                return None
            raise DestinationError(
                f"the server holds all of {name} but did not finish it", file=name
            )
        data, offset = data[kept - offset :], kept  # the server took only the first bytes
    raise DestinationError(
        f"the server kept taking only part of the bytes sent for {name}",
        file=name,
        hint="run again to resume from the last finished part object",
    )


def _finished(reply: requests.Response, total: int | None, name: str) -> int:
    meta = reply.json()
    if total is None or int(meta.get("size", -1)) != total:
        raise DestinationError(
            f"the server finished {name} with {meta.get('size')} bytes, expected {total}",
            file=name,
        )
    return int(meta["generation"])


def _persisted(reply: requests.Response) -> int | None:
    """Bytes a resumable upload holds, from a 308's ``Range: bytes=0-N`` (none: 0);
    None when the header makes no sense."""
    header = reply.headers.get("Range")
    if header is None:
        return 0
    first, _, last = header.removeprefix("bytes=").partition("-")
    if first != "0" or not last.isdigit():
        return None
    return int(last) + 1
