"""Destinations behind one protocol: a local folder, ``s3://``, ``gs://`` or ``az://``."""

from __future__ import annotations

from ..settings import check_dest_url
from .base import (
    Composer,
    Copier,
    Exclusive,
    GroupedParts,
    LocalFiles,
    PartReader,
    PartSizer,
    PendingUpload,
    RangeReader,
    RereadableParts,
    Store,
    Upload,
)
from .errors import os_error
from .local import LocalStore


def open_store(dest: str, *, endpoint_url: str | None = None, max_connections: int = 32) -> Store:
    """The store for ``dest``: ``s3://bucket/prefix``, ``gs://bucket/prefix``,
    ``az://container/prefix`` (also ``abfs[s]://container@ACCOUNT.dfs.core.windows.net/prefix``
    and ``https://ACCOUNT.blob.core.windows.net/container/prefix``) or a local folder.

    URLs are checked by :func:`~xview2_ingest.settings.check_dest_url` (where the
    destination is read, so that errors name ``--dest`` or ``XVIEW2_DEST``)."""
    if dest.startswith("s3://"):
        from .s3 import S3Store

        return S3Store(dest, endpoint_url=endpoint_url, max_connections=max_connections)
    if dest.startswith("gs://"):
        from .gcs import GCSStore

        return GCSStore(dest, endpoint_url=endpoint_url, max_connections=max_connections)
    if dest.startswith(("az://", "abfs://", "abfss://")) or ".blob.core.windows.net/" in dest:
        from .azure import AzureStore

        return AzureStore(dest, endpoint_url=endpoint_url, max_connections=max_connections)
    check_dest_url(dest, "destination")  # raises for any other URL
    return LocalStore(dest)


__all__ = [
    "Composer",
    "Copier",
    "Exclusive",
    "GroupedParts",
    "LocalFiles",
    "LocalStore",
    "PartReader",
    "PartSizer",
    "PendingUpload",
    "RangeReader",
    "RereadableParts",
    "Store",
    "Upload",
    "open_store",
    "os_error",
]
