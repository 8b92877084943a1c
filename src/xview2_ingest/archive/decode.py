"""The gzip layer of an archive: the fastest decoder installed, chosen once.

* ``isal`` (python-isal, the ISA-L ``igzip`` inflater) -- preferred;
* ``zlib-ng`` (its ``gzip_ng`` module);
* the standard library's ``gzip`` (zlib) -- always available.

Both fast decoders are C readers that release the GIL while inflating, so decoding
overlaps with hashing and network reads (another thread) and writing (a pool of threads).
Why this order: ``docs/benchmarks-extract.md`` ("Design notes and measurements").

Extraction and ``index --from-archives`` both open archives here, so both read the same
formats (gzip or an uncompressed tar, told apart by the first bytes) with the same decoder.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from typing import IO, Any, cast

GZIP_MAGIC = b"\x1f\x8b"

Opener = Callable[[io.RawIOBase], IO[bytes]]


def _installed() -> dict[str, Opener]:
    found: dict[str, Opener] = {}
    try:
        from isal import igzip

        found["isal"] = lambda raw: cast(IO[bytes], igzip.IGzipFile(fileobj=raw, mode="rb"))
    except ImportError:
        pass
    try:
        from zlib_ng import gzip_ng

        found["zlib-ng"] = lambda raw: cast(IO[bytes], gzip_ng.GzipNGFile(fileobj=raw, mode="rb"))
    except ImportError:
        pass
    found["zlib"] = lambda raw: cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return found


DECODERS: dict[str, Opener] = _installed()
"""Every gzip decoder installed, fastest first, by name."""
DECODER: str = next(iter(DECODERS))
"""Name of the gzip decoder in use: ``isal``, ``zlib-ng`` or ``zlib``."""


def open_decoded(raw: io.RawIOBase, head: bytes, *, decoder: str | None = None) -> IO[bytes]:
    """The tar bytes of ``raw``: gunzipped when ``head`` (its first bytes, not consumed)
    is gzip magic, else ``raw`` itself, buffered.  ``decoder`` names one of
    :data:`DECODERS` (default: :data:`DECODER`)."""
    if head[:2] == GZIP_MAGIC:
        return DECODERS[decoder or DECODER](raw)
    return cast(IO[bytes], io.BufferedReader(raw, buffer_size=1 << 20))


class CountingReader(io.RawIOBase):
    """A read-only raw stream over ``raw`` that counts the bytes read through it (for
    progress) and can show its first bytes without consuming them (to sniff the format).
    """

    def __init__(self, raw: IO[bytes]):
        super().__init__()
        self._raw = raw
        self._head = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def head(self, n: int = 512) -> bytes:
        """The first bytes of the stream (at most ``n``); the next reads return them again."""
        while len(self._head) < n:
            chunk = self._raw.read(n - len(self._head))
            if not chunk:
                break
            self._head += chunk
            self.count += len(chunk)
        return self._head[:n]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            got = min(len(view), len(self._head))
            view[:got], self._head = self._head[:got], self._head[got:]
            return got
        readinto = getattr(self._raw, "readinto", None)
        if readinto is not None:
            got = readinto(view) or 0
        else:
            data = self._raw.read(len(view))
            got = len(data)
            view[:got] = data
        self.count += got
        return got

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


__all__ = ["DECODER", "DECODERS", "GZIP_MAGIC", "CountingReader", "open_decoded"]
