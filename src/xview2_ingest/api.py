"""The Python API: every operation of the ``xview2`` command, as a function.

Each function takes plain values (the same settings as the command's flags; ``None``
means "from ``XVIEW2_*`` or the default", see :mod:`.settings`), reports progress through
an optional callback of :class:`~xview2_ingest.events.Event`, and returns a report that
satisfies :class:`~xview2_ingest.reports.Report`.  A per-file failure is in the report,
not raised; a problem with the whole request (bad settings, an unreachable destination,
nothing to work on) raises a :class:`~xview2_ingest.errors.XView2Error`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from .catalog import Catalog
from .errors import UsageError
from .events import Event, ProgressCallback, no_progress
from .extract.core import Extractor
from .extract.report import ExtractReport
from .importing import Importer
from .links import Link, check_distinct, read_links
from .manifest import Manifest
from .prepare.kinds import KINDS as LAYOUT_KINDS
from .prepare.kinds import LayoutKind
from .reports import (
    CleanReport,
    DownloadPlan,
    DownloadReport,
    FileState,
    FileStatus,
    ImportReport,
    IngestReport,
    Report,
    StatusReport,
    VerifyReport,
)
from .settings import (
    CONNECTIONS,
    MAX_CONNECTIONS,
    MEMORY_MB,
    ca_bundle_setting,
    dest_setting,
    limit_rate_setting,
    resolve_catalog,
)
from .stores import Store, open_store
from .transfer.engine import TransferEngine, TransferOptions
from .transfer.http import RetryPolicy
from .transfer.plan import plan_download as _plan_download
from .verification import Verifier

if TYPE_CHECKING:
    from .index.stats import DatasetStats

__all__ = [
    "INCLUDE_CHOICES",
    "LAYOUT_KINDS",
    "FreshLinks",
    "clean",
    "dataset_stats",
    "demo",
    "download",
    "extract",
    "ingest",
    "open_destination",
    "status",
]

MiB = 1 << 20

FreshLinks = Callable[[list[str]], Sequence[Link | str]]
"""Asked for fresh links when some expired: gets the file names, returns new links
(none to stop).  The command line asks the user at a prompt."""

PathLike = str | os.PathLike[str]

INCLUDE_CHOICES = ("tier3", "test")
"""What ``ingest(include=...)`` may add: ``tier3`` joins train (in the splits and the
layouts), ``test`` lists the test and hold pairs in the splits too."""


def open_destination(
    dest: PathLike | None = None, *, endpoint_url: str | None = None, max_connections: int = 32
) -> Store:
    """The store for ``dest`` (``XVIEW2_DEST`` or ``./data/xview2`` when None)."""
    return open_store(
        dest_setting(dest), endpoint_url=endpoint_url, max_connections=max_connections
    )


def _as_links(links: Sequence[Link | str]) -> list[Link]:
    urls = [x for x in links if isinstance(x, str)]
    given = [x for x in links if isinstance(x, Link)]
    return check_distinct((read_links(urls) if urls else []) + given)


def _transfer_options(
    connections: int | None,
    max_connections: int | None,
    memory_mb: int | None,
    part_size: int | None,
    all_digests: bool,
    force: bool,
    retry: RetryPolicy | None,
    limit_rate: int | str | None,
    ca_bundle: PathLike | None,
) -> TransferOptions:
    return TransferOptions(
        connections=CONNECTIONS.resolve_optional(connections),
        max_connections=MAX_CONNECTIONS.resolve(max_connections),
        memory_budget=MEMORY_MB.resolve(memory_mb) * MiB,
        part_size=part_size,
        all_digests=all_digests,
        force=force,
        retry=retry or RetryPolicy(),
        limit_rate=limit_rate_setting(limit_rate),
        ca_bundle=ca_bundle_setting(ca_bundle),
    )


def download(
    links: Sequence[Link | str],
    dest: PathLike | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[PathLike] = (),
    connections: int | None = None,
    max_connections: int | None = None,
    memory_mb: int | None = None,
    part_size: int | None = None,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    all_digests: bool = False,
    retry: RetryPolicy | None = None,
    fresh_links: FreshLinks | None = None,
    limit_rate: int | str | None = None,
    ca_bundle: PathLike | None = None,
) -> DownloadReport:
    """Download every link into ``dest``, verified, resuming any unfinished transfer.

    ``links`` are :class:`~xview2_ingest.links.Link` objects or URL strings.  When links
    expire and ``fresh_links`` is given, it is asked for new ones and the same run goes
    on with them.  ``limit_rate`` caps the speed of the whole run in bytes per second
    (``"10M"``, ``"500K"`` or a number; default ``XVIEW2_LIMIT_RATE``, else no cap).
    ``connections`` None tunes each file's count while it runs; ``ca_bundle`` is a PEM
    file of CA certificates for HTTPS links (see
    :func:`~xview2_ingest.settings.ca_bundle_setting`).  Never raises for a per-file
    failure: each file's outcome is in the report (``report.exit_code`` maps it).
    """
    options = _transfer_options(
        connections,
        max_connections,
        memory_mb,
        part_size,
        all_digests,
        force,
        retry,
        limit_rate,
        ca_bundle,
    )
    cat = resolve_catalog(catalog, catalog_files)
    store = open_destination(
        dest, endpoint_url=endpoint_url, max_connections=options.max_connections
    )
    engine = TransferEngine(store, cat, options, progress)
    try:
        report = engine.run(_as_links(links))
        while report.expired and fresh_links is not None:
            wanted = {f.name for f in report.expired}
            fresh = [x for x in _as_links(fresh_links(sorted(wanted))) if x.name in wanted]
            if not fresh:
                break
            again = {f.name: f for f in engine.run(fresh).files}
            report = DownloadReport(
                [again.get(f.name, f) for f in report.files],
                report.dest,
                max(report.peak_buffer_bytes, engine.pool.peak),
            )
        return report
    finally:
        engine.close()


def status(
    dest: PathLike | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[PathLike] = (),
    endpoint_url: str | None = None,
) -> StatusReport:
    """What is verified, partial or missing at ``dest``, against the catalog."""
    cat = resolve_catalog(catalog, catalog_files)
    store = open_destination(dest, endpoint_url=endpoint_url)
    manifest = Manifest(store).files
    pending = store.pending_uploads()
    partial = {p.name: p for p in pending}
    names = [e.name for e in cat.official()]
    names += sorted(n for n in set(manifest) | set(partial) if n not in names)
    out = [_file_status(store, cat, name, manifest.get(name), partial) for name in names]
    return StatusReport(store.url, out, pending)


def _file_status(
    store: Store, cat: Catalog, name: str, record: dict | None, partial: dict
) -> FileStatus:
    """One file's state: a file is verified only while its bytes are those verified at
    download and its SHA-1 is the catalog's (demo files under official names are not)."""
    here = store.size_of(name) if record is not None else None
    expected = cat.lookup(name)
    fix = "run `xview2 download` with a fresh link: it fetches the file again"
    if record is not None and here is not None:
        size = record.get("size")
        state: FileState = "verified" if record.get("verified") else "unverified"
        detail = ""
        if here != size:
            state = "truncated" if size and here < size else "corrupt"
            detail = f"{here:,} bytes here, {size:,} verified at download; {fix}"
        elif record.get("corrupt"):
            state = "corrupt"
            actual = (record.get("corrupt_digests") or {}).get("sha1", "?")
            detail = f"SHA-1 now {actual}, not the one verified at download; {fix}"
        elif expected.sha1 and record.get("sha1") not in (None, expected.sha1):
            state = "unverified"
            detail = "its SHA-1 is not the catalog's: not the official file"
        return FileStatus(
            name,
            state,
            size,
            here,
            record.get("sha1"),
            record.get("verified_at"),
            name in cat,
            detail,
        )
    if record is not None and record.get("removed"):
        return FileStatus(
            name,
            "extracted",
            record.get("size"),
            0,
            record.get("sha1"),
            record.get("verified_at"),
            name in cat,
            f"removed after its verified extraction ({record.get('removed_at')})",
        )
    if name in partial:
        return FileStatus(name, "partial", None, partial[name].bytes_done, in_catalog=name in cat)
    detail = "recorded in manifest.json but absent; " + fix if record is not None else ""
    return FileStatus(name, "missing", expected.size, in_catalog=name in cat, detail=detail)


def clean(
    dest: PathLike | None = None,
    names: str | Sequence[str] | None = None,
    *,
    endpoint_url: str | None = None,
    dry_run: bool = False,
) -> CleanReport:
    """Discard this tool's unfinished transfers (all, or those of ``names``): partial
    files and their resume state locally, its own unfinished uploads on object stores;
    uploads another tool started at the destination are never touched.  ``dry_run`` only
    lists what would be discarded."""
    store = open_destination(dest, endpoint_url=endpoint_url)
    wanted: list[str | None] = [names] if isinstance(names, str) else [*(names or [])]
    if not wanted:
        wanted = [None]
    discarded = [
        pending.name for name in wanted for pending in store.abort_pending(name, dry_run=dry_run)
    ]
    return CleanReport(store.url, discarded, dry_run)


def extract(
    names: Sequence[str] | None = None,
    dest: PathLike | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[PathLike] = (),
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
    remove_archives: bool = False,
    assemble_geotiff: bool = False,
    check: bool = False,
    workers: int = 8,
) -> ExtractReport:
    """Unpack downloaded archives into ``dest`` as they are laid out (``<split>/images``,
    ``labels``, ``targets``), safely and in one streamed pass each.

    ``names``: archive file names (any GeoTIFF part stands for the whole GeoTIFF archive);
    None extracts every archive recorded in ``DEST/manifest.json``.  The GeoTIFF parts
    are checked as one stream against the catalog's ``xview2_geotiff.tgz`` entry (hence
    ``catalog``/``catalog_files``); ``assemble_geotiff`` also publishes that archive;
    ``remove_archives`` deletes each archive after its verified extraction.  Members are
    published only once the whole archive matched the SHA-1 it was downloaded with; one
    that no longer does is marked corrupt in the manifest.  A rerun skips members in
    place with their recorded size; ``check`` also reads them and compares their CRC-32,
    writing again whatever differs.  Never raises for a per-archive failure (see
    ``report.exit_code``).
    """
    cat = resolve_catalog(catalog, catalog_files)
    store = open_destination(dest, endpoint_url=endpoint_url, max_connections=max(32, 2 * workers))
    extractor = Extractor(
        store,
        catalog=cat,
        progress=progress,
        remove_archives=remove_archives,
        assemble_geotiff=assemble_geotiff,
        check=check,
        workers=workers,
    )
    return extractor.run(names)


def dataset_stats(
    dest: PathLike | None = None,
    *,
    endpoint_url: str | None = None,
    build_if_missing: bool = False,
    progress: ProgressCallback | None = None,
    bands: bool = False,
) -> DatasetStats:
    """Pairs and buildings per split, disaster and damage class, from the index;
    ``bands`` adds the per-split, per-band mean and standard deviation of the images
    (reused from ``index/bands.json`` while the images are unchanged)."""
    from .index.stats import compute_stats  # pyarrow: loaded when asked for (see .lazy)

    return compute_stats(
        dest_setting(dest),
        endpoint_url=endpoint_url,
        build_if_missing=build_if_missing,
        progress=progress,
        bands=bands,
    )


def ingest(
    links: Sequence[Link | str],
    dest: PathLike | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[PathLike] = (),
    connections: int | None = None,
    max_connections: int | None = None,
    memory_mb: int | None = None,
    part_size: int | None = None,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
    all_digests: bool = False,
    fresh_links: FreshLinks | None = None,
    extract_archives: bool = True,
    from_archives: bool = False,
    remove_archives: bool = False,
    assemble_geotiff: bool = False,
    workers: int = 8,
    limit_rate: int | str | None = None,
    ca_bundle: PathLike | None = None,
    targets: bool = False,
    layout: LayoutKind | None = None,
    include: Sequence[str] = (),
    val_fraction: float | None = None,
    folds: int | None = None,
    val_fold: int = 0,
    seed: int = 0,
) -> IngestReport:
    """Download, then extract and index what was verified: links to an indexed dataset,
    and on request one ready to train on.

    Stages, in order: ``download``, ``extract``, ``targets`` (with ``targets``:
    :func:`make_targets` for every split that lacks them, i.e. tier3), ``index``,
    ``pixels`` (with ``targets``: :func:`count_pixels` fills the ``px_*`` columns),
    ``splits`` (with ``val_fraction`` or ``folds``: :func:`make_splits`), ``layout``
    (``"torchgeo"`` or ``"images-masks"``: :func:`make_layout`, with the val pairs in
    ``val/`` when splits were made).  ``include``: ``"tier3"`` merges tier3 into train
    (splits and layout), ``"test"`` lists test and hold pairs in the splits.  A stage
    after one that failed does not run.  ``extract_archives=False`` stops after the
    download; ``from_archives`` indexes the labels straight from the archives instead of
    extracting them (and so cannot make targets or a layout).
    """
    from .index.build import build_index  # pyarrow, numpy: loaded when asked for
    from .prepare import count_pixels, make_targets

    wanted = _check_ingest_request(
        extract_archives, from_archives, targets, layout, include, val_fraction, folds, val_fold
    )
    emit = progress or no_progress
    report = IngestReport(dest_setting(dest))
    at: dict[str, Any] = {"endpoint_url": endpoint_url, "progress": progress}
    verified: list[str] = []  # the archives to extract, known once downloaded
    stages: list[tuple[str, Callable[[], Report]]] = []
    if extract_archives and not from_archives:
        unpack = partial(
            extract,
            verified,
            dest,
            catalog=catalog,
            catalog_files=catalog_files,
            remove_archives=remove_archives,
            assemble_geotiff=assemble_geotiff,
            workers=workers,
            **at,
        )
        stages.append(("extract", unpack))
    if extract_archives:
        if targets:
            stages.append(("targets", partial(make_targets, dest, **at)))
        stages.append(("index", partial(build_index, dest, from_archives=from_archives, **at)))
        if targets:
            stages.append(("pixels", partial(count_pixels, dest, **at)))
        stages += _ready_stages(dest, at, layout, wanted, val_fraction, folds, val_fold, seed)
    emit(Event("stage", "download"))
    fetched = download(
        links,
        dest,
        connections=connections,
        max_connections=max_connections,
        memory_mb=memory_mb,
        part_size=part_size,
        progress=progress,
        force=force,
        all_digests=all_digests,
        fresh_links=fresh_links,
        catalog=catalog,
        catalog_files=catalog_files,
        endpoint_url=endpoint_url,
        limit_rate=limit_rate,
        ca_bundle=ca_bundle,
    )
    report.stages["download"] = fetched
    report.dest = fetched.dest
    verified.extend(f.name for f in fetched.files)
    failed = not fetched.ok
    for name, run in stages:
        if failed:
            report.stages[name] = None  # asked for, not run: an earlier stage failed
            continue
        emit(Event("stage", name))
        stage = report.stages[name] = run()
        failed = not stage.ok
    return report


def _ready_stages(
    dest: PathLike | None,
    at: dict[str, Any],
    layout: LayoutKind | None,
    wanted: set[str],
    val_fraction: float | None,
    folds: int | None,
    val_fold: int,
    seed: int,
) -> list[tuple[str, Callable[[], Report]]]:
    """The ``splits`` and ``layout`` stages of :func:`ingest`, as asked for."""
    from .prepare import make_layout, make_splits

    stages: list[tuple[str, Callable[[], Report]]] = []
    split = val_fraction is not None or folds is not None
    tier3 = "tier3" in wanted
    if split:
        fraction = 0.1 if val_fraction is None else val_fraction
        stages.append(
            (
                "splits",
                partial(
                    make_splits,
                    dest,
                    val_fraction=fraction,
                    folds=folds,
                    val_fold=val_fold,
                    seed=seed,
                    include_tier3=tier3,
                    include_test="test" in wanted,
                    **at,
                ),
            )
        )
    if layout is not None:
        layer = partial(make_layout, dest, layout, val=split, include_tier3=tier3, **at)
        stages.append(("layout", layer))
    return stages


def _check_ingest_request(
    extract_archives: bool,
    from_archives: bool,
    targets: bool,
    layout: str | None,
    include: Sequence[str],
    val_fraction: float | None,
    folds: int | None,
    val_fold: int,
) -> set[str]:
    """Refuse, before any byte is fetched, a combination of ingest options that cannot
    work; return the ``include`` values as a set."""
    unknown = [x for x in include if x not in INCLUDE_CHOICES]
    if unknown:
        raise UsageError(
            f"unknown include {unknown[0]!r}", hint=f"choose from {', '.join(INCLUDE_CHOICES)}"
        )
    if layout is not None and layout not in LAYOUT_KINDS:
        raise UsageError(
            f"unknown layout {layout!r}", hint=f"choose from {', '.join(LAYOUT_KINDS)}"
        )
    if val_fraction is not None and folds is not None:
        raise UsageError("val_fraction and folds both given", hint="choose one")
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise UsageError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if folds is not None and (folds < 2 or not 0 <= val_fold < folds):
        raise UsageError(
            f"folds must be 2 or more and val_fold one of 0..folds-1 (got folds {folds}, "
            f"val_fold {val_fold})"
        )
    needs_tree = [n for n, on in (("targets", targets), ("a layout", layout is not None)) if on]
    if needs_tree and (from_archives or not extract_archives):
        why = "indexing from the archives" if from_archives else "not extracting"
        raise UsageError(
            f"{' and '.join(needs_tree)} need the extracted files, which {why} leaves out",
            hint="drop --from-archives / --no-extract to extract the archives",
        )
    return set(include)


def verify(
    names: Sequence[str] | None = None,
    dest: PathLike | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[PathLike] = (),
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Hash published files at ``dest`` again (``names``, default: every file in the
    manifest) and compare them with the catalog, else with the digests recorded at
    download.  A file that no longer matches is named with the digest expected and the
    one found, and marked ``corrupt`` in the manifest: ``status`` shows it, and the next
    ``download`` fetches it again.  ``workers``: parts read at once (default 3 on a local
    disk, 8 on an object store).  Never raises for a per-file failure."""
    cat = resolve_catalog(catalog, catalog_files)
    store = open_destination(dest, endpoint_url=endpoint_url)
    return Verifier(store, cat, progress=progress, workers=workers).run(names)


def import_archives(
    paths: Sequence[PathLike],
    dest: PathLike | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[PathLike] = (),
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
    partial: bool = False,
    size: int | None = None,
    move: bool = False,
    force: bool = False,
    memory_mb: int | None = None,
) -> ImportReport:
    """Adopt archives already on this machine into ``dest``, as if downloaded.

    Each file is named by its name (or, renamed, by its SHA-1 in the catalog) and checked
    against the catalog before it is placed: a hard link (``move``: a rename) on the same
    local file system, else a copy or a multipart upload, hashed again on the way.  A
    partial download (``.crdownload``, ``.part``, ``.download``, ``.partial``, or
    ``partial``) seeds the destination's resume state so that the next ``download``
    fetches only the rest; ``size`` gives its full size when the catalog does not.
    """
    if not paths:
        raise UsageError("no files given", hint="pass the archives to import")
    cat = resolve_catalog(catalog, catalog_files)
    store = open_destination(dest, endpoint_url=endpoint_url)
    importer = Importer(
        store,
        cat,
        progress=progress,
        partial=partial,
        size=size,
        move=move,
        force=force,
        memory_budget=MEMORY_MB.resolve(memory_mb) * MiB,
    )
    return importer.run(paths)


def plan_download(
    links: Sequence[Link | str],
    dest: PathLike | None = None,
    *,
    catalog: Catalog | None = None,
    catalog_files: Sequence[PathLike] = (),
    connections: int | None = None,
    max_connections: int | None = None,
    memory_mb: int | None = None,
    part_size: int | None = None,
    endpoint_url: str | None = None,
    force: bool = False,
    all_digests: bool = False,
    retry: RetryPolicy | None = None,
    limit_rate: int | str | None = None,
    ca_bundle: PathLike | None = None,
) -> DownloadPlan:
    """``download --dry-run``: probe every link (2 bytes each) and report what a run
    would skip, resume or fetch, and the space it needs; no body is fetched and nothing
    is written.  The plan's ``exit_code`` is the run's for expired or refused links."""
    options = _transfer_options(
        connections,
        max_connections,
        memory_mb,
        part_size,
        all_digests,
        force,
        retry,
        limit_rate,
        ca_bundle,
    )
    cat = resolve_catalog(catalog, catalog_files)
    store = open_destination(dest, endpoint_url=endpoint_url)
    return _plan_download(store, cat, _as_links(links), options)


def demo(
    dest: PathLike | None = None,
    *,
    pairs: int = 40,
    ttl: float = 300,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """The whole job on a small synthetic dataset: ``pairs`` image pairs per split are
    made, served on 127.0.0.1 behind links that expire after ``ttl`` seconds, and
    ingested into ``dest`` with a catalog of their true digests.

    ``dest`` defaults to ``./data/xview2-demo`` (never ``XVIEW2_DEST``: the synthetic
    archives carry the official names); a destination holding real archives is refused
    (:class:`~xview2_ingest.errors.UsageError`)."""
    if pairs < 1:
        raise UsageError(f"--pairs must be at least 1 (got {pairs})")
    if ttl <= 0:
        raise UsageError(f"--ttl must be positive (got {ttl})")
    from .demo.run import DEMO_DEST, refuse_real_data, served_demo  # werkzeug

    emit = progress or no_progress
    target = str(dest) if dest is not None else DEMO_DEST
    refuse_real_data(open_destination(target, endpoint_url=endpoint_url))
    with served_demo(pairs, ttl) as served:
        emit(
            Event(
                "info",
                "demo",
                detail=f"serving {served.archives} synthetic archives on {served.base_url} "
                f"behind links that expire in {int(ttl)}s; ingesting into {target}",
            )
        )
        return ingest(
            served.links,
            target,
            catalog_files=[served.catalog],
            endpoint_url=endpoint_url,
            progress=progress,
            force=True,
        )
