"""Resumable SHA-1 and MD5: digests whose state can be saved and restored across runs.

Resuming a transfer after a crash must not re-read the bytes already hashed (for S3 they
are in an unfinished multipart upload and cannot be read back at all), so the digest's
running state is checkpointed with the transfer.  :mod:`hashlib` objects cannot be
serialised; OpenSSL's ``SHA1_*``/``MD5_*`` functions keep their whole state in a small
plain struct that can.  We call them through :mod:`ctypes` on the very libcrypto that
:mod:`hashlib` itself is linked against, so the speed is hashlib's (the GIL is released
during each call) and no extra native dependency is needed.  The alternatives that were
measured, and why they lost, are in ``docs/benchmarks.md`` (design notes).
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import sys
from typing import Any

_CTX_SIZE = 128  # SHA_CTX is 96 bytes and MD5_CTX 92; room to spare.
_DIGEST_SIZE = {"sha1": 20, "md5": 16}
_PREFIX = {"sha1": "SHA1", "md5": "MD5"}
# Where OpenSSL keeps the byte count (Nl, Nh: bits, low and high word) and the bytes
# waiting in the block buffer (num, always < 64) in each context: after the chaining
# words (5 for SHA-1, 4 for MD5) and the 16-word block.  Checked at import (_layout_ok).
_COUNT_AT = {"sha1": 20, "md5": 16}
_BLOCK = 64


def _load_libcrypto() -> Any:
    import _hashlib  # the OpenSSL binding hashlib uses; dlsym on it reaches libcrypto

    lib = ctypes.CDLL(_hashlib.__file__)
    for prefix in _PREFIX.values():
        for suffix, args in (
            ("_Init", [ctypes.c_void_p]),
            ("_Update", [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]),
            ("_Final", [ctypes.c_void_p, ctypes.c_void_p]),
        ):
            fn = getattr(lib, prefix + suffix)
            fn.argtypes = args
            fn.restype = ctypes.c_int
    return lib


try:
    _LIB: Any = _load_libcrypto()
except (ImportError, OSError, AttributeError):  # pragma: no cover - exotic builds
    _LIB = None

ALGORITHMS = tuple(_DIGEST_SIZE)


def _words(raw: bytes, at: int, n: int) -> list[int]:
    return [int.from_bytes(raw[at + 4 * i : at + 4 * i + 4], sys.byteorder) for i in range(n)]


def _count(algorithm: str, raw: bytes) -> tuple[int, int]:
    """(bytes hashed, bytes waiting in the block buffer) of a saved context."""
    at = _COUNT_AT[algorithm]
    low, high = _words(raw, at, 2)
    (num,) = _words(raw, at + 8 + _BLOCK, 1)
    return ((high << 32) | low) // 8, num


def check_state(algorithm: str, state: str, nbytes: int | None = None) -> bytes:
    """The raw context in ``state``, after checking it can be restored without harm.

    A saved state is untrusted input (it comes back from the destination): it must be
    base64 of exactly one context, and its counters must be consistent (the block
    buffer's fill below one block, matching the byte count), else OpenSSL would read or
    write outside the context.  With ``nbytes``, the context must have hashed exactly
    that many bytes.  Raises :class:`ValueError` saying what is wrong.
    """
    if algorithm not in _DIGEST_SIZE:
        raise ValueError(f"unsupported digest {algorithm!r}")
    if _LIB is None or not _LAYOUT_OK:
        raise ValueError("this Python's OpenSSL cannot restore digest state")
    if not isinstance(state, str) or len(state) > 4 * _CTX_SIZE:
        raise ValueError("the saved state is not a short string")
    try:
        raw = base64.b64decode(state, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the saved state is not base64") from None
    if len(raw) != _CTX_SIZE:
        raise ValueError(f"the saved state has {len(raw)} bytes, not {_CTX_SIZE}")
    hashed, waiting = _count(algorithm, raw)
    if waiting >= _BLOCK or waiting != hashed % _BLOCK:
        raise ValueError("the saved state's counters disagree")
    if nbytes is not None and hashed != nbytes:
        raise ValueError(f"the saved state covers {hashed:,} bytes, not {nbytes:,}")
    return raw


class Digest:
    """A running digest (``sha1`` or ``md5``) whose state can be saved with :meth:`state`."""

    def __init__(self, algorithm: str, state: str | None = None):
        if algorithm not in _DIGEST_SIZE:
            raise ValueError(f"unsupported digest {algorithm!r}")
        self.algorithm = algorithm
        self._fallback: Any = None
        self._ctx = ctypes.create_string_buffer(_CTX_SIZE)
        if _LIB is None:
            if state is not None:
                raise ValueError("this Python's OpenSSL cannot restore digest state")
            self._fallback = hashlib.new(algorithm)
            return
        prefix = _PREFIX[algorithm]
        self._update = getattr(_LIB, prefix + "_Update")
        self._final = getattr(_LIB, prefix + "_Final")
        if state is None:
            getattr(_LIB, prefix + "_Init")(self._ctx)
        else:
            raw = check_state(algorithm, state)  # exactly _CTX_SIZE bytes, consistent
            ctypes.memmove(self._ctx, raw, _CTX_SIZE)

    @property
    def resumable(self) -> bool:
        return self._fallback is None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._fallback is not None:
            self._fallback.update(data)
            return
        view = memoryview(data)
        if not view.contiguous or view.readonly:
            view = memoryview(bytearray(view))
        n = view.nbytes
        if n:
            c_buf = (ctypes.c_char * n).from_buffer(view)
            self._update(self._ctx, c_buf, n)

    def state(self) -> str | None:
        """The running state, base64; None where the platform cannot save it."""
        if self._fallback is not None:
            return None
        return base64.b64encode(self._ctx.raw).decode("ascii")

    def hexdigest(self) -> str:
        if self._fallback is not None:
            return str(self._fallback.hexdigest())
        ctx = ctypes.create_string_buffer(self._ctx.raw, _CTX_SIZE)
        out = ctypes.create_string_buffer(_DIGEST_SIZE[self.algorithm])
        self._final(out, ctx)
        return out.raw.hex()


def _layout_ok() -> bool:
    """Whether this OpenSSL keeps its counters where :func:`_count` reads them."""
    if _LIB is None:
        return False
    try:
        for algo, prefix in _PREFIX.items():
            ctx = ctypes.create_string_buffer(_CTX_SIZE)
            getattr(_LIB, prefix + "_Init")(ctx)
            data = (ctypes.c_char * 100).from_buffer(bytearray(100))
            getattr(_LIB, prefix + "_Update")(ctx, data, 100)
            if _count(algo, ctx.raw) != (100, 36):
                return False
    except (AttributeError, OSError):
        return False
    return True


_LAYOUT_OK = _layout_ok()
