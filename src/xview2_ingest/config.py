"""Settings: explicit arguments first, then ``XVIEW2_*`` environment variables, then defaults.

| setting          | environment               | default          |
|------------------|---------------------------|------------------|
| destination      | ``XVIEW2_DEST``           | ``./data/xview2``|
| connections/file | ``XVIEW2_CONNECTIONS``    | 8                |
| connections, all | ``XVIEW2_MAX_CONNECTIONS``| 32               |
| memory budget    | ``XVIEW2_MEMORY_MB``      | 160              |
| catalog files    | ``XVIEW2_CATALOG``        | none (built-in)  |
| S3 resume copies | ``XVIEW2_STATE_DIR``      | ``$XDG_STATE_HOME/xview2-ingest`` |

S3 credentials and ``AWS_ENDPOINT_URL`` follow the standard AWS chain (boto3 reads them).
"""

from __future__ import annotations

import os

from .errors import UsageError

DEFAULT_DEST = "./data/xview2"
DEFAULT_MEMORY_MB = 160
"""Room for 16 MiB parts on 8 connections plus the reorder window (10 buffers)."""


def setting(value: str | None, env: str, default: str) -> str:
    if value is not None:
        return value
    return os.environ.get(env) or default


def int_setting(value: int | None, env: str, default: int, *, minimum: int = 1) -> int:
    if value is None:
        raw = os.environ.get(env)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"{env}={raw!r} is not a whole number") from None
    if value < minimum:
        raise UsageError(f"{env.removeprefix('XVIEW2_').lower()} must be at least {minimum}")
    return value


def dest_setting(dest: str | os.PathLike[str] | None) -> str:
    return setting(None if dest is None else os.fspath(dest), "XVIEW2_DEST", DEFAULT_DEST)
