"""``build_index``: label files (extracted, or straight from the archives) to Parquet.

The index covers exactly the verified dataset.  From the extracted tree it indexes the
label members recorded by verified extractions (:mod:`xview2_ingest.extract.records`)
whose archives are still, per the manifest, the ones extracted; other label files found
under the label folders (left by a demo, copied by hand) are *stray*: listed in the
report, never indexed.  A tree with no extraction record at all (extracted by another
tool) is indexed as found, and the report says so (``verified`` is False).  From the
archives, each archive's SHA-1 is computed in the same pass and must be the manifest's;
if not, nothing is published.  Either way ``index.json`` names the archives (name and
SHA-1) the index was built from.

The work is a pipeline: the parent lists the label files in a fixed order (or streams them
out of the archives, through the same safe reader as extraction, :mod:`xview2_ingest.archive`)
and cuts them into batches; worker processes read and parse each
batch into Arrow tables (:func:`.tables.build_batch`); the parent writes the tables in
order into two Parquet files, in row groups, so memory stays bounded whatever the size of
the dataset.  Outputs are written to temporary files and published only when complete:
a store with local files (:class:`~xview2_ingest.stores.LocalFiles`) gets them by an
atomic rename, any other store by :meth:`Store.put_stream`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa

from ..archive import CorruptArchiveError, CountingReader, TarStream, open_decoded
from ..archive.errors import CHECK_HINT
from ..errors import DestinationError, ExitCode, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..extract import records
from ..extract.errors import ArchiveChecksumError, fetch_again
from ..extract.plan import archive_of, is_archive
from ..manifest import Manifest
from ..settings import dest_setting
from ..stores import LocalFiles, Store, open_store
from . import tables
from .labels import ARCHIVES, GEOTIFF_TIERS, SPLITS, is_label_path
from .tables import BUILDINGS_SCHEMA, IMAGES_SCHEMA, Batch, ParquetSink, build_batch, geo_metadata

log = logging.getLogger(__name__)

INDEX_DIR = "index"
IMAGES_FILE = f"{INDEX_DIR}/images.parquet"
BUILDINGS_FILE = f"{INDEX_DIR}/buildings.parquet"
REPORT_FILE = f"{INDEX_DIR}/index.json"

BATCH_FILES = 256
BATCH_BYTES = 16 << 20
MAX_LABEL_BYTES = 256 << 20
READ_THREADS = 16
SHARED_MEMORY = "/dev/shm"  # where workers leave results for the parent, when it exists


_UNREADABLE_HINT = f"nothing was indexed; {CHECK_HINT}"


class NoLabelsError(XView2Error):
    """The destination holds no label files (nor archives, with ``from_archives``)."""


@dataclass
class IndexReport:
    """What :func:`build_index` did."""

    dest: str
    source: Literal["tree", "archives"]
    images: int = 0
    buildings: int = 0
    pairs: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Label files left out, as ``(file, reason)``; ``archive:member`` inside archives."""
    outputs: list[str] = field(default_factory=list)
    """Files written, relative to the destination."""
    seconds: float = 0.0
    label_bytes: int = 0
    archives: list[dict[str, object]] = field(default_factory=list)
    """The archives the index was built from: ``{"name", "sha1"}``."""
    stray: list[str] = field(default_factory=list)
    """Label files in the tree that no verified extraction recorded: not indexed."""
    verified: bool = True
    """False when the tree had no extraction record and was indexed as found."""

    @property
    def ok(self) -> bool:
        """True when every label file found was indexed."""
        return not self.skipped

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.FAILURE

    def summary(self) -> str:
        skipped = f"; {len(self.skipped)} label file(s) skipped" if self.skipped else ""
        if self.stray:
            skipped += f"; {len(self.stray)} stray label file(s) not indexed"
        if not self.verified:
            skipped += "; no verified extraction recorded: indexed the tree as found"
        return (
            f"indexed {self.images:,} images ({self.pairs:,} pre/post pairs) and "
            f"{self.buildings:,} buildings from {self.label_bytes / 1e6:,.1f} MB of labels "
            f"({'archives' if self.source == 'archives' else 'extracted tree'}) in "
            f"{self.seconds:.1f}s{skipped} -> {self.dest.rstrip('/')}/{INDEX_DIR}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "dest": self.dest,
            "source": self.source,
            "images": self.images,
            "pairs": self.pairs,
            "buildings": self.buildings,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "outputs": self.outputs,
            "seconds": round(self.seconds, 3),
            "label_bytes": self.label_bytes,
            "archives": self.archives,
            "verified": self.verified,
            "stray": self.stray,
        }


# A task is ("tree", [(name, size)], progress bytes) -- read by the worker itself -- or
# ("data", [(name, content, archive)], progress bytes) -- already read from an archive.
Task = tuple[str, list, int]


def build_index(
    dest: str | os.PathLike[str] | None = None,
    *,
    from_archives: bool = False,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> IndexReport:
    """Index the label files at ``dest`` into ``index/images.parquet`` and
    ``index/buildings.parquet`` (GeoParquet); return an :class:`IndexReport`.

    Reads ``DEST/{train,test,hold,tier3}/labels/*.json`` and
    ``DEST/geotiffs/{tier1,tier3,test,hold}/labels/*.json`` or, with ``from_archives``,
    the label members of the archives at ``dest``, streamed without extracting anything.
    Malformed label files are skipped and listed in the report.  ``workers`` processes
    parse in parallel (default: one per CPU; 1 parses in this process).
    """
    started = time.monotonic()
    emit = progress or no_progress
    store = open_store(dest_setting(dest), endpoint_url=endpoint_url)
    report = IndexReport(store.url, "archives" if from_archives else "tree")
    workers = workers if workers is not None else (os.cpu_count() or 1)
    emit(Event("stage", "index", detail=f"indexing labels in {store.url}"))
    with _Workers(workers, store, endpoint_url) as pool:
        if from_archives:
            archives = _present_archives(store)
            if not archives:
                raise NoLabelsError(
                    f"no xView2 archive in {store.url}", hint="download the archives first"
                )
            total = sum(size for _, size in archives)
            tasks: Iterator[Task] = _archive_tasks(store, archives, report)
        else:
            names = _label_names(store, report)
            if not names:
                raise NoLabelsError(
                    f"no label files under {store.url}/<split>/labels",
                    hint="run `xview2 extract` first, or index straight from the archives "
                    "with `xview2 index --from-archives`",
                )
            total = sum(size for _, size in names)
            tasks = _tree_tasks(names)
        emit(Event("started", "labels", total=total))
        _write_index(store, pool.run(tasks), report, emit, total, started)
    report.seconds = time.monotonic() - started
    return report


def _write_index(
    store: Store,
    batches: Iterator[tuple[int, Batch]],
    report: IndexReport,
    emit: ProgressCallback,
    total: int,
    started: float,
) -> None:
    with _Staging(store) as staging:
        images = ParquetSink(staging.path(IMAGES_FILE), IMAGES_SCHEMA, row_group_rows=64_000)
        buildings = ParquetSink(
            staging.path(BUILDINGS_FILE),
            BUILDINGS_SCHEMA,
            row_group_rows=64_000,
            early_metadata={"geo": geo_metadata(set(), [])},  # types unknown yet: []
        )
        types: set[str] = set()
        bounds: list[float] = []
        pair_keys: dict[tuple[str, str, str], int] = {}
        try:
            for done, batch in batches:
                images.write(batch.images_table())
                buildings.write(batch.buildings)
                report.skipped.extend(batch.skipped)
                report.label_bytes += batch.nbytes
                types |= batch.geometry_types
                bounds = _union(bounds, batch.bounds)
                _count_phases(pair_keys, batch)
                for name, reason in batch.skipped:
                    log.warning("skipped %s: %s", name, reason)
                emit(Event("bytes", "labels", done=done, total=total))
        except BaseException:
            images.abort()
            buildings.abort()
            raise
        buildings.close({"geo": geo_metadata(types, bounds)})
        images.close()
        report.images, report.buildings = images.rows, buildings.rows
        report.pairs = sum(1 for phases in pair_keys.values() if phases == 3)
        for name in (BUILDINGS_FILE, IMAGES_FILE):
            size = staging.publish(name)
            report.outputs.append(name)
            emit(Event("published", name, done=size, total=size, detail=f"{size / 1e6:,.1f} MB"))
        report.seconds = time.monotonic() - started
        info = report.to_dict() | {"created": datetime.now(UTC).isoformat(timespec="seconds")}
        store.write_bytes(REPORT_FILE, json.dumps(info, indent=2).encode())
        report.outputs.append(REPORT_FILE)


def _union(a: list[float], b: list[float]) -> list[float]:
    if not a or not b:
        return list(a or b)
    return [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]


def _count_phases(keys: dict[tuple[str, str, str], int], batch: Batch) -> None:
    cols = [batch.images[c] for c in ("layout", "split", "image_id", "phase")]
    for layout, split, image_id, phase in zip(*cols, strict=True):
        key = (layout, split, image_id)
        keys[key] = keys.get(key, 0) | (1 if phase == "pre" else 2)


# ------------------------------------------------------------------------------ sources


def _label_names(store: Store, report: IndexReport) -> list[tuple[str, int]]:
    """The label files to index: those recorded by verified extractions, present with
    their recorded size (others are reported as skipped, the unrecorded as stray)."""
    prefixes = [f"{s}/labels" for s in SPLITS] + [f"geotiffs/{t}/labels" for t in GEOTIFF_TIERS]
    found: list[tuple[str, int]] = []
    for prefix in prefixes:
        if isinstance(store, LocalFiles):
            here = _scan(store.root / prefix, prefix)
        else:
            here = [(n, size) for n, size in store.list_files(prefix + "/") if is_label_path(n)]
        log.debug("%d label files under %s", len(here), prefix)
        found.extend(sorted(here))
    recorded = _verified_labels(store, report)
    if recorded is None:
        report.verified = False
        log.warning("no verified extraction is recorded at %s: indexing it as found", store.url)
        return found
    present = dict(found)
    report.stray = [n for n, _ in found if n not in recorded]
    for name in report.stray[:20]:
        log.warning("stray label file (no verified extraction recorded it): %s", name)
    for name, size in recorded.items():
        if present.get(name) != size:
            why = "absent" if name not in present else f"{present[name]:,} bytes, not {size:,}"
            report.skipped.append((name, f"{why}; run `xview2 extract` to restore it"))
    return [(n, size) for n, size in found if recorded.get(n) == size]


def _verified_labels(store: Store, report: IndexReport) -> dict[str, int] | None:
    """Label members (name -> size) of the verified extractions whose archives are, per
    the manifest, still the ones extracted; None when no extraction record exists."""
    manifest = Manifest(store).files
    archives = dict.fromkeys(archive_of(n) for n in sorted(manifest) if is_archive(n))
    labels: dict[str, int] = {}
    seen = False
    for archive in archives:
        record = records.load(store, archive)
        if record is None:
            continue
        seen = True
        index = records.load_index(store, record)
        if not record.verified or index is None or not _still_current(record, manifest):
            log.warning("not indexing %s: its extraction is not verified or not current", archive)
            continue
        report.archives.append({"name": archive, "sha1": record.sha1})
        labels.update({n: size for n, (size, _) in index.items() if is_label_path(n)})
    return labels if seen else None


def _still_current(record: records.ExtractionRecord, manifest: dict[str, dict]) -> bool:
    """Every file the extraction read is still in the manifest, with the same SHA-1 and
    not marked corrupt (a later download of another file would have replaced it)."""
    for source in record.sources:
        entry = manifest.get(source["name"])
        sha1 = source.get("sha1") or (record.sha1 if len(record.sources) == 1 else None)
        if not entry or entry.get("corrupt") or (sha1 and entry.get("sha1") != sha1):
            return False
    return True


def _scan(folder: Path, prefix: str) -> list[tuple[str, int]]:
    """Label files directly in a local ``labels`` folder (a cheaper walk than a listing)."""
    try:
        with os.scandir(folder) as entries:
            return [
                (f"{prefix}/{e.name}", e.stat().st_size)
                for e in entries
                if e.name.endswith(".json") and not e.name.startswith("._") and e.is_file()
            ]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DestinationError(f"cannot list: {exc.strerror or exc}", file=prefix) from None


def _present_archives(store: Store) -> list[tuple[str, int]]:
    """(name, size) of the first archive found for each part of the dataset."""
    found = []
    for names in ARCHIVES.values():
        for name in names:
            size = store.size_of(name)
            if size is not None:
                found.append((name, size))
                break
    return found


def _tree_tasks(names: list[tuple[str, int]]) -> Iterator[Task]:
    batch: list[tuple[str, int]] = []
    size = 0
    for name, n in names:
        batch.append((name, n))
        size += n
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield ("tree", batch, size)
            batch, size = [], 0
    if batch:
        yield ("tree", batch, size)


class _Hashing(CountingReader):
    """A :class:`CountingReader` that also computes the SHA-1 of what it hands over
    (every byte, the sniffed head included, passes through ``readinto``)."""

    def __init__(self, raw: IO[bytes]):
        super().__init__(raw)
        self.sha1 = hashlib.sha1()

    def readinto(self, buffer: Any) -> int:
        got = super().readinto(buffer)
        self.sha1.update(memoryview(buffer)[:got])
        return got


def _check_sha1(
    store: Store, manifest: Manifest, archive: str, sha1: str, detail: str = ""
) -> str | None:
    """The manifest's SHA-1 of ``archive`` (None if unknown); an archive whose bytes no
    longer have it is marked corrupt and refused."""
    expected = (manifest.get(archive) or {}).get("sha1")
    if expected and sha1 != expected:
        manifest.mark_corrupt(archive, {"sha1": sha1})
        raise ArchiveChecksumError(
            archive,
            "sha1",
            expected,
            sha1,
            detail=detail,
            hint="nothing was indexed; " + fetch_again(store.url),
        )
    return expected


def _archive_tasks(
    store: Store, archives: list[tuple[str, int]], report: IndexReport
) -> Iterator[Task]:
    """Label members of each archive, read in one forward pass (nothing extracted), with
    the archive's SHA-1 checked against the manifest at its end."""
    manifest = Manifest(store)
    for archive, _size in archives:
        raw = _Hashing(store.open_read(archive))
        last = 0
        batch: list[tuple[str, bytes | Exception, str | None]] = []
        size = 0
        try:
            tar = TarStream(open_decoded(raw, raw.head()), archive, hint=_UNREADABLE_HINT)
            while (member := tar.next_member()) is not None:
                name = member.name.removeprefix("./")
                if not member.is_file or not is_label_path(name):
                    continue
                if member.sparse or member.size > MAX_LABEL_BYTES:
                    why = (
                        "a GNU sparse file"
                        if member.sparse
                        else f"{member.size:,} bytes, too large"
                    )
                    batch.append((name, ValueError(why), archive))
                    continue
                data = tar.read_data()
                batch.append((name, data, archive))
                size += len(data)
                if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
                    yield ("data", batch, raw.count - last)
                    last, batch, size = raw.count, [], 0
            tar.drain()
        except CorruptArchiveError as exc:  # damaged since download, or never an archive?
            with contextlib.suppress(Exception):
                while raw.read(1 << 20):
                    pass
                _check_sha1(store, manifest, archive, raw.sha1.hexdigest(), exc.message)
            raise
        except XView2Error:
            raise
        except Exception as exc:  # network errors of the store's stream
            raise XView2Error(
                f"cannot read the archive: {exc}", file=archive, hint=_UNREADABLE_HINT
            ) from exc
        finally:
            with contextlib.suppress(Exception):
                raw.close()
        sha1 = raw.sha1.hexdigest()
        expected = _check_sha1(store, manifest, archive, sha1)
        report.archives.append({"name": archive, "sha1": sha1, "verified": bool(expected)})
        if batch or raw.count > last:
            yield ("data", batch, raw.count - last)


# ------------------------------------------------------------------------------ workers

_worker_store: Store | None = None


def _init_worker(url: str, endpoint_url: str | None, spill_dir: str | None) -> None:
    global _worker_store
    _worker_store = open_store(url, endpoint_url=endpoint_url)
    tables.SPILL_DIR = spill_dir


def _worker_task(task: Task) -> tuple[int, Batch]:
    assert _worker_store is not None
    return _do_task(task, _worker_store)


def _do_task(task: Task, store: Store) -> tuple[int, Batch]:
    kind, payload, done = task
    items = _read_labels(store, payload) if kind == "tree" else payload
    batch = build_batch(items)
    pa.default_memory_pool().release_unused()  # keep the peak of a worker to one batch
    return done, batch


def _read_labels(
    store: Store, names: list[tuple[str, int]]
) -> list[tuple[str, bytes | Exception, str | None]]:
    if isinstance(store, LocalFiles):
        root = f"{store.root}/"

        def read(name: str) -> bytes | Exception:
            try:
                with open(root + name, "rb") as fh:
                    return fh.read()
            except OSError as exc:
                return exc

        return [(name, read(name), None) for name, _ in names]

    def fetch(name: str) -> bytes | Exception:
        try:
            data = store.read_bytes(name)
        except XView2Error as exc:
            return exc
        return data if data is not None else FileNotFoundError("vanished during indexing")

    with ThreadPoolExecutor(min(READ_THREADS, len(names)) or 1) as pool:
        contents = list(pool.map(fetch, [name for name, _ in names]))
    return [(name, data, None) for (name, _), data in zip(names, contents, strict=True)]


def _start_method() -> str:
    """``fork`` (instant, nothing imported again) on Linux while this process runs no
    other thread; else ``spawn``, as threads (boto3, a progress display) would be copied
    into the workers in an unknown state."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return "fork"
    return "spawn"


class _Workers:
    """Runs tasks in order: in this process when there is a single batch, else in a pool
    of worker processes, started only then."""

    def __init__(self, workers: int, store: Store, endpoint_url: str | None):
        self.store, self.workers, self.endpoint_url = store, workers, endpoint_url
        self.pool: ProcessPoolExecutor | None = None
        self.spill_dir: str | None = None

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)

    def _start(self) -> ProcessPoolExecutor:
        if os.path.isdir(SHARED_MEMORY) and os.access(SHARED_MEMORY, os.W_OK):
            self.spill_dir = tempfile.mkdtemp(prefix="xview2-index-", dir=SHARED_MEMORY)
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context(_start_method()),
            initializer=_init_worker,
            initargs=(self.store.url, self.endpoint_url, self.spill_dir),
        )

    def run(self, tasks: Iterator[Task]) -> Iterator[tuple[int, Batch]]:
        """Results in task order; at most two tasks per worker in flight."""
        first = next(tasks, None)
        if first is None:
            return
        second = next(tasks, None)
        if second is None or self.workers <= 1:
            yield _do_task(first, self.store)
            if second is not None:
                yield _do_task(second, self.store)
                for task in tasks:
                    yield _do_task(task, self.store)
            return
        self.pool = self._start()
        pending: deque[Future[tuple[int, Batch]]] = deque()
        for task in _chain(first, second, tasks):
            pending.append(self.pool.submit(_worker_task, task))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _chain(first: Task, second: Task, rest: Iterator[Task]) -> Iterator[Task]:
    yield first
    yield second
    yield from rest


# ------------------------------------------------------------------------------ outputs


class _Staging:
    """Temporary files for the outputs, published atomically once complete."""

    def __init__(self, store: Store):
        self.store = store
        if isinstance(store, LocalFiles):
            base = store.work / "tmp"
            base.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix="index-", dir=base))
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="xview2-index-"))

    def path(self, name: str) -> Path:
        return self.dir / name.replace("/", "_")

    def publish(self, name: str) -> int:
        staged = self.path(name)
        size = staged.stat().st_size
        if isinstance(self.store, LocalFiles):
            final = self.store.path_of(name)
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
            except OSError as exc:
                raise DestinationError(f"cannot write: {exc.strerror or exc}", file=name) from None
        else:
            with open(staged, "rb") as fh:
                self.store.put_stream(name, fh, size)
            staged.unlink()
        return size

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
