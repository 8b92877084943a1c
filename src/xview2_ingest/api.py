"""The Python API: the same operations as the CLI, returning report objects."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from .catalog import Catalog, load_catalog
from .config import DEFAULT_MEMORY_MB, dest_setting, int_setting
from .events import ProgressCallback
from .links import Link, read_links
from .manifest import Manifest
from .reports import DownloadReport
from .stores import PendingUpload, Store, open_store
from .transfer.engine import TransferEngine, TransferOptions
from .transfer.http import RetryPolicy

MiB = 1 << 20


def _catalog(catalog: Catalog | None, catalog_files: Sequence[str | os.PathLike[str]]) -> Catalog:
    files = list(catalog_files)
    env = os.environ.get("XVIEW2_CATALOG")
    if not files and env:
        files = [p for p in env.split(os.pathsep) if p]
    base = catalog if catalog is not None else Catalog()
    for path in files:
        base = base.with_file(path)
    return base


def open_destination(
    dest: str | os.PathLike[str] | None = None,
    *,
    endpoint_url: str | None = None,
    max_connections: int = 32,
) -> Store:
    """The store for ``dest`` (``XVIEW2_DEST`` or ``./data/xview2`` when None)."""
    return open_store(
        dest_setting(dest), endpoint_url=endpoint_url, max_connections=max_connections
    )


def download(
    links: Sequence[Link | str],
    dest: str | os.PathLike[str] | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[str | os.PathLike[str]] = (),
    connections: int | None = None,
    max_connections: int | None = None,
    memory_mb: int | None = None,
    part_size: int | None = None,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    all_digests: bool = False,
    retry: RetryPolicy | None = None,
) -> DownloadReport:
    """Download every link into ``dest``, verified, resuming any unfinished transfer.

    ``links`` are :class:`Link` objects or URL strings.  Never raises for a per-file
    failure: each file's outcome is in the report (``report.exit_code`` maps it).
    """
    parsed = [x for x in links if isinstance(x, Link)]
    urls = [x for x in links if isinstance(x, str)]
    all_links = read_links(urls) + parsed if urls else parsed
    options = TransferOptions(
        connections=int_setting(connections, "XVIEW2_CONNECTIONS", 8),
        max_connections=int_setting(max_connections, "XVIEW2_MAX_CONNECTIONS", 32),
        memory_budget=int_setting(memory_mb, "XVIEW2_MEMORY_MB", DEFAULT_MEMORY_MB, minimum=16)
        * MiB,
        part_size=part_size,
        all_digests=all_digests,
        force=force,
        retry=retry or RetryPolicy(),
    )
    store = open_destination(
        dest, endpoint_url=endpoint_url, max_connections=options.max_connections
    )
    engine = TransferEngine(store, _catalog(catalog, catalog_files), options, progress)
    try:
        return engine.run(all_links)
    finally:
        engine.close()


FileState = Literal["verified", "unverified", "partial", "missing"]


@dataclass
class FileStatus:
    name: str
    state: FileState
    size: int | None = None
    bytes_done: int = 0
    sha1: str | None = None
    verified_at: str | None = None
    in_catalog: bool = True


@dataclass
class StatusReport:
    dest: str
    files: list[FileStatus]
    pending: list[PendingUpload] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "dest": self.dest,
            "files": [asdict(f) for f in self.files],
            "pending_uploads": [asdict(p) for p in self.pending],
        }


def status(
    dest: str | os.PathLike[str] | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[str | os.PathLike[str]] = (),
    endpoint_url: str | None = None,
) -> StatusReport:
    """What is verified, partial or missing at ``dest``, against the catalog."""
    store = open_destination(dest, endpoint_url=endpoint_url)
    cat = _catalog(catalog, catalog_files)
    manifest = Manifest(store).files
    pending = store.pending_uploads()
    partial = {p.name: p for p in pending}
    names = [e.name for e in cat.official()]
    names += sorted(n for n in set(manifest) | set(partial) if n not in names)
    out = []
    for name in names:
        record = manifest.get(name)
        present = record is not None and store.size_of(name) == record.get("size")
        if present and record is not None:
            out.append(
                FileStatus(
                    name,
                    "verified" if record.get("verified") else "unverified",
                    record.get("size"),
                    record.get("size") or 0,
                    record.get("sha1"),
                    record.get("verified_at"),
                    name in cat,
                )
            )
        elif name in partial:
            out.append(
                FileStatus(name, "partial", None, partial[name].bytes_done, in_catalog=name in cat)
            )
        else:
            size = cat.lookup(name).size
            out.append(FileStatus(name, "missing", size, in_catalog=name in cat))
    return StatusReport(store.url, out, pending)


def clean_names(
    dest: str | os.PathLike[str] | None = None,
    name: str | None = None,
    *,
    endpoint_url: str | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Abort this tool's unfinished uploads and drop its partial files (all, or of
    ``name``); return their names.  ``dry_run`` only lists them.  Uploads another tool
    started at the destination are never touched."""
    store = open_destination(dest, endpoint_url=endpoint_url)
    return [pending.name for pending in store.abort_pending(name, dry_run=dry_run)]


def clean(
    dest: str | os.PathLike[str] | None = None,
    name: str | None = None,
    *,
    endpoint_url: str | None = None,
) -> int:
    """Abort unfinished uploads and drop partial files (all, or of ``name``); how many."""
    return len(clean_names(dest, name, endpoint_url=endpoint_url))


def links_from(
    urls: Sequence[str] = (), links_file: str | None = None, stdin_text: str | None = None
) -> list[Link]:
    return read_links(urls, links_file, stdin_text)


__all__ = [
    "DownloadReport",
    "FileStatus",
    "StatusReport",
    "clean",
    "download",
    "links_from",
    "load_catalog",
    "open_destination",
    "status",
]
