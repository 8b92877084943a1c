"""The compressed bytes of an archive, read ahead by one thread from one or more files.

The GeoTIFF archive is published as six parts whose concatenation is the ``.tgz``; they
are read here one after the other as one stream, so the decoder never knows.  The thread
reads 1 MiB chunks through :meth:`Store.open_read` (a local file or an S3 GET, never a
local copy), feeds the digests of the whole stream, and hands the chunks to the decoder
through a small bounded queue, so hashing and network reads overlap with decoding and
memory stays bounded (``depth`` chunks).  It also computes the SHA-1 of each file read
(``part_sha1``), so that the extractor can tell which of the six GeoTIFF parts changed.
When decoding fails, :meth:`ChainedSource.drain` reads the rest, hashing only, so that a
damaged archive can be told from an intact one that was never a valid archive.

A broken stream (a network error on S3) is reopened where it stopped: with a ranged read
where the store has the :class:`~xview2_ingest.stores.RangeReader` capability, else by
reading the file again from its start and dropping the bytes already consumed (slower,
but the extraction goes on).  Each file must yield exactly the size the manifest recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from ..errors import DestinationError, XView2Error
from ..stores import RangeReader, Store
from .errors import CORRUPT_HINT, CorruptArchiveError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRIES = 5
_EOF = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, XView2Error):
        return False
    module = type(exc).__module__
    return module.startswith(("botocore", "urllib3", "http.client")) or isinstance(
        exc, ConnectionError | TimeoutError
    )


class ChainedSource(io.RawIOBase):
    """A read-only raw stream over ``parts`` (name, expected size) read in order.

    ``consumed`` counts the bytes handed to the decoder so far (for progress reports,
    which the caller emits from its own loop: a callback raising inside the decoder's
    read would otherwise look like a damaged archive).
    """

    def __init__(
        self,
        store: Store,
        parts: Sequence[tuple[str, int]],
        *,
        archive: str,
        digests: Sequence[str] = (),
        per_part: bool = False,
        depth: int = 8,
    ):
        super().__init__()
        self._store = store
        self._parts = list(parts)
        self.archive = archive
        self.size = sum(size for _, size in self._parts)
        self._hashes = {algo: hashlib.new(algo) for algo in digests}
        self._per_part = per_part and len(self._parts) > 1
        self._whole_is_part = per_part and len(self._parts) == 1 and "sha1" in self._hashes
        self.part_sha1: dict[str, str] = {}
        """SHA-1 of each file read to its end (``per_part``)."""
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="xview2-source", daemon=True)
        self._chunk = memoryview(b"")
        self._eof = False
        self.consumed = 0

    # -- producer thread ---------------------------------------------------------------
    def start(self) -> ChainedSource:
        self._thread.start()
        return self

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for name, size in self._parts:
                if not self._read_part(name, size):
                    return
            self._put(_EOF)
        except BaseException as exc:
            self._put(_Failure(exc))

    def _open(self, name: str, offset: int) -> IO[bytes]:
        """``name`` from ``offset`` on: a ranged read if the store is a RangeReader, else
        the whole file again with its first ``offset`` bytes read and dropped."""
        if offset and isinstance(self._store, RangeReader):
            return self._store.open_read_at(name, offset)
        fh = self._store.open_read(name)
        if offset:
            log.info(
                "%s cannot read %s from an offset (no RangeReader); reading its first "
                "%d bytes again",
                self._store.url,
                name,
                offset,
            )
            skipped = 0
            while skipped < offset and not self._stop.is_set():
                chunk = fh.read(min(CHUNK, offset - skipped))
                if not chunk:
                    fh.close()
                    raise CorruptArchiveError(
                        f"ended after {skipped:,} bytes when read again",
                        file=name,
                        hint="the file changed while it was read; download it again",
                    )
                skipped += len(chunk)
        return fh

    def _read_part(self, name: str, size: int) -> bool:
        offset, attempt = 0, 0
        part = hashlib.sha1() if self._per_part else None
        while True:
            fh: IO[bytes] | None = None
            try:
                fh = self._open(name, offset)
                while not self._stop.is_set():
                    data = fh.read(CHUNK)
                    if not data:
                        break
                    offset += len(data)
                    if offset > size:
                        raise CorruptArchiveError(
                            f"longer than the {size:,} bytes the manifest records",
                            file=name,
                            hint="the file changed since it was downloaded; download it again",
                        )
                    for h in self._hashes.values():
                        h.update(data)
                    if part is not None:
                        part.update(data)
                    if not self._put(data):
                        return False
                    attempt = 0
                else:
                    return False
            except Exception as exc:
                if not _transient(exc) or attempt >= RETRIES:
                    if isinstance(exc, XView2Error):
                        raise
                    raise DestinationError(
                        f"reading failed after {offset:,} bytes: {exc}",
                        file=name,
                        hint="run `xview2 extract` again: members already written are kept",
                    ) from exc
                attempt += 1
                log.info("reading %s failed at %d (%s); reopening", name, offset, exc)
                time.sleep(min(0.5 * 2**attempt, 8))
                continue
            finally:
                if fh is not None:
                    with contextlib.suppress(Exception):
                        fh.close()
            if offset != size:
                raise CorruptArchiveError(
                    f"ended after {offset:,} of the {size:,} bytes the manifest records",
                    file=name,
                    hint="the file changed since it was downloaded; download it again",
                )
            if part is not None:
                self.part_sha1[name] = part.hexdigest()
            elif self._whole_is_part:  # one file: its SHA-1 is the whole stream's
                self.part_sha1[name] = self._hashes["sha1"].hexdigest()
            return True

    # -- consumer side (the decoder) ---------------------------------------------------
    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        if self._eof:
            return False
        item = self._queue.get()
        if item is _EOF:
            self._eof = True
            return False
        if isinstance(item, _Failure):
            self._eof = True
            raise item.error
        self._chunk = memoryview(item)
        self.consumed += len(item)
        return True

    def head(self, n: int = 512) -> bytes:
        """The first bytes of the stream, without consuming them (for format sniffing)."""
        if not self._chunk and not self._next_chunk():
            return b""
        return bytes(self._chunk[:n])

    def readinto(self, buffer: Any) -> int:
        if not self._chunk and not self._next_chunk():
            return 0
        n = min(len(buffer), len(self._chunk))
        buffer[:n] = self._chunk[:n]
        self._chunk = self._chunk[n:]
        return n

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        if not self._chunk and not self._next_chunk():
            return b""
        data = bytes(self._chunk[:size])
        self._chunk = self._chunk[len(data) :]
        return data

    def readall(self) -> bytes:
        out = []
        while self._chunk or self._next_chunk():
            out.append(bytes(self._chunk))
            self._chunk = memoryview(b"")
        return b"".join(out)

    def finish(self) -> dict[str, str]:
        """After the last byte was consumed: the digests of the whole stream."""
        if self._chunk or self._next_chunk():
            raise CorruptArchiveError(
                "data after the end of the archive", file=self.archive, hint=CORRUPT_HINT
            )
        self._thread.join()
        return {algo: h.hexdigest() for algo, h in self._hashes.items()}

    def drain(self) -> dict[str, str] | None:
        """After the decoder failed: read the rest of the stream (hashing only) and return
        the digests of the whole, or None when the files cannot be read to their end."""
        try:
            self._chunk = memoryview(b"")
            while self._next_chunk():
                self._chunk = memoryview(b"")
            self._thread.join()
        except XView2Error as exc:
            log.info("%s cannot be read to its end either: %s", self.archive, exc)
            return None
        return {algo: h.hexdigest() for algo, h in self._hashes.items()}

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        super().close()
