"""Destinations behind one protocol: a local folder or ``s3://bucket/prefix``."""

from __future__ import annotations

from .base import (
    Composer,
    Copier,
    LocalFiles,
    PartReader,
    PendingUpload,
    RangeReader,
    Store,
    Upload,
)
from .local import LocalStore


def open_store(dest: str, *, endpoint_url: str | None = None, max_connections: int = 32) -> Store:
    """The store for ``dest``: ``s3://bucket/prefix`` or a local folder."""
    if dest.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(dest, endpoint_url=endpoint_url, max_connections=max_connections)
    if "://" in dest:
        from ..errors import UsageError

        raise UsageError(
            f"unsupported destination {dest!r}", hint="use a folder or s3://bucket/prefix"
        )
    return LocalStore(dest)


__all__ = [
    "Composer",
    "Copier",
    "LocalFiles",
    "LocalStore",
    "PartReader",
    "PendingUpload",
    "RangeReader",
    "Store",
    "Upload",
    "open_store",
]
