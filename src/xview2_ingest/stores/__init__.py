"""Destinations behind one protocol: a local folder, ``s3://``, ``gs://`` or ``az://``."""

from __future__ import annotations

from .base import Composer, Copier, LocalFiles, PendingUpload, RangeReader, Store, Upload
from .local import LocalStore


def open_store(dest: str, *, endpoint_url: str | None = None, max_connections: int = 32) -> Store:
    """The store for ``dest``: ``s3://bucket/prefix``, ``gs://bucket/prefix``,
    ``az://container/prefix`` (also ``abfs[s]://container@ACCOUNT.dfs.core.windows.net/prefix``
    and ``https://ACCOUNT.blob.core.windows.net/container/prefix``) or a local folder."""
    if dest.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(dest, endpoint_url=endpoint_url, max_connections=max_connections)
    if dest.startswith("gs://"):
        from .gcs import GCSStore

        return GCSStore(dest, endpoint_url=endpoint_url, max_connections=max_connections)
    if dest.startswith(("az://", "abfs://", "abfss://")) or ".blob.core.windows.net/" in dest:
        from .azure import AzureStore

        return AzureStore(dest, endpoint_url=endpoint_url, max_connections=max_connections)
    if "://" in dest:
        from ..errors import UsageError

        raise UsageError(
            f"unsupported destination {dest!r}",
            hint="use a folder, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix",
        )
    return LocalStore(dest)


__all__ = [
    "Composer",
    "Copier",
    "LocalFiles",
    "LocalStore",
    "PendingUpload",
    "RangeReader",
    "Store",
    "Upload",
    "open_store",
]
