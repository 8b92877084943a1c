"""``download --dry-run``: what a run would do, learnt without fetching a body.

Every link is probed as the engine probes it (one 2-byte ranged GET: size, Range support,
identity; a dead link answers as it would in the run), and checked against the catalog
and the destination: already verified there (skipped), an unfinished transfer to resume,
or a fetch.  The plan adds up the bytes to fetch and the space the destination still has
to find.  Nothing is written anywhere.  The plan's exit code is the run's for the links
(3 when some expired, 1 when one is refused or does not match the catalog) and 1 when a
local destination lacks the space.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..catalog import Catalog, CatalogEntry
from ..errors import ContentError, LinkExpiredError, XView2Error
from ..links import Link
from ..reports import DownloadPlan, PlannedFile
from ..stores import LocalFiles, PendingUpload, Store
from .engine import TransferEngine, TransferOptions


def plan_download(
    store: Store, catalog: Catalog, links: Sequence[Link], options: TransferOptions
) -> DownloadPlan:
    """Probe every link and say what ``download`` would do with it."""
    engine = TransferEngine(store, catalog, options)
    try:
        pending = {p.name: p for p in store.pending_uploads()}
        with ThreadPoolExecutor(max(1, min(16, len(links)))) as pool:
            planned = list(pool.map(lambda link: _plan(engine, link, pending), links))
    finally:
        engine.close()
    plan = DownloadPlan(store.url, planned)
    plan.space_needed = sum(_space(f, pending.get(f.name), store) for f in planned)
    plan.space_free = _free(store)
    return plan


def _plan(engine: TransferEngine, link: Link, pending: dict[str, PendingUpload]) -> PlannedFile:
    entry = engine.catalog.lookup(link.name)
    out = PlannedFile(link.name, "fetch", catalog=_catalog_kind(entry))
    skipped = engine.already_there(link, entry)
    try:
        remote = engine.http.probe(link)
    except XView2Error as exc:
        if skipped is None:
            out.action = "expired" if isinstance(exc, LinkExpiredError) else "fail"
        else:  # the run would not even ask: the file is there
            out.action, out.size = "skip", skipped.size
        out.error = exc
        return out
    out.size, out.ranges = remote.size, remote.ranges
    out.seconds_left = link.seconds_left()
    if skipped is not None:
        out.action = "skip"
        return out
    if remote.size is None:
        out.action = "fail"
        out.error = ContentError("the server did not say how large the file is", file=link.name)
        return out
    if entry.size is not None and entry.size != remote.size:
        out.action = "fail"
        out.error = ContentError(
            f"the server offers {remote.size:,} bytes but the catalog expects {entry.size:,}",
            file=link.name,
        )
        return out
    held = pending.get(link.name)
    if held is not None and held.bytes_done and remote.ranges:
        out.action, out.bytes_resumable = "resume", min(held.bytes_done, remote.size)
    out.bytes_to_fetch = remote.size - out.bytes_resumable
    return out


def _catalog_kind(entry: CatalogEntry) -> str:
    if entry.sha1:
        return "sha1"
    if entry.md5:
        return "md5"
    return "size" if entry.size is not None else "none"


def _space(f: PlannedFile, held: PendingUpload | None, store: Store) -> int:
    """Bytes the destination must still find for ``f``: a local partial file already has
    its whole size reserved; an object store holds the parts it has."""
    if f.action not in ("fetch", "resume") or f.size is None:
        return 0
    if held is not None and isinstance(store, LocalFiles):
        return 0
    return f.size - f.bytes_resumable


def _free(store: Store) -> int | None:
    if not isinstance(store, LocalFiles):
        return None
    path: Path = store.root
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(os.fspath(path)).free
    except OSError:
        return None
