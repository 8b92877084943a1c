"""Unpack downloaded archives at their destination: safe, streaming, resumable.

One archive at a time, in one pass and in bounded memory::

    store.open_read (1 or 6 files)  ->  read-ahead thread (SHA1, progress)  ->  gzip decoder
        ->  tar headers + safety checks (main thread)  ->  writer threads (files or PUTs)

Nothing is copied locally first: for S3 the archive object is read as one GET stream and
every member becomes one object.  See :mod:`.safety` for what is refused and why members
are validated one by one instead of in a separate first pass, :mod:`.records` for how a
rerun skips finished work, and :mod:`.sinks` for how members are written.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..archive.decode import open_decoded
from ..archive.tarstream import TarStream
from ..catalog import GEOTIFF_ARCHIVE, GEOTIFF_PART_NAMES, Catalog
from ..errors import DestinationError, UsageError, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..manifest import MANIFEST, Manifest
from ..stores import Composer, Store
from . import records
from .errors import (
    CORRUPT_HINT,
    REFUSED_HINT,
    ArchiveChecksumError,
    ArchiveNotDownloadedError,
    UnsafeMemberError,
)
from .report import ArchiveResult, ExtractReport
from .safety import safe_name
from .sinks import Sink, WriterPool, missing_members, sink_for
from .source import ChainedSource

log = logging.getLogger(__name__)

MiB = 1 << 20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
MEMORY_BUDGET = 64 * MiB
"""Member bytes read from the archive but not yet written, at most."""
INLINE_MAX = 16 * MiB
"""Members up to this size are read whole and written by the pool; larger ones stream."""


def is_archive(name: str) -> bool:
    return name in GEOTIFF_PART_NAMES or name.endswith(ARCHIVE_SUFFIXES)


def archive_of(name: str) -> str:
    """The archive a file belongs to: the GeoTIFF parts all belong to ``xview2_geotiff.tgz``."""
    return GEOTIFF_ARCHIVE if name in GEOTIFF_PART_NAMES else name


@dataclass
class Plan:
    archive: str
    sources: list[tuple[str, int]] = field(default_factory=list)
    """Files to read in order, with their recorded sizes (empty when not available)."""
    problem: XView2Error | None = None
    expected: dict[str, str] = field(default_factory=dict)
    """Digests of the whole stream to check while extracting."""
    sha1: str | None = None
    """The archive's SHA1 as the manifest knows it (identity of the extraction record)."""
    parts_published: bool = False

    @property
    def size(self) -> int:
        return sum(size for _, size in self.sources)


def _catalog(catalog: Catalog | None) -> Catalog:
    if catalog is not None:
        return catalog
    base = Catalog()
    for path in (p for p in os.environ.get("XVIEW2_CATALOG", "").split(os.pathsep) if p):
        base = base.with_file(path)
    return base


class Extractor:
    """Extracts archives into one store; :func:`extract` is the public entry point."""

    def __init__(
        self,
        store: Store,
        *,
        catalog: Catalog | None = None,
        progress: ProgressCallback | None = None,
        remove_archives: bool = False,
        assemble_geotiff: bool = False,
        workers: int = 8,
        memory_budget: int = MEMORY_BUDGET,
    ):
        if workers < 1:
            raise UsageError("workers must be at least 1")
        self.store = store
        self.catalog = _catalog(catalog)
        self.progress = progress or no_progress
        self.remove_archives = remove_archives
        self.assemble_geotiff = assemble_geotiff
        self.workers = workers
        self.budget = max(memory_budget, 4 * MiB)
        self.inline_max = min(INLINE_MAX, self.budget // 2)
        self.manifest = Manifest(store)

    def _emit(self, kind: str, name: str, **kw: object) -> None:
        self.progress(Event(kind, name, **kw))  # type: ignore[arg-type]

    # -- planning ------------------------------------------------------------------------
    def archives(self, names: Sequence[str] | None) -> list[str]:
        if names is None:
            found = [archive_of(n) for n in sorted(self.manifest.files) if is_archive(n)]
            if not found:
                raise ArchiveNotDownloadedError(
                    f"no downloaded archive is recorded in {MANIFEST}", file=self.store.url
                )
        else:
            found = [archive_of(n) for n in names]
        return list(dict.fromkeys(found))

    def _published(self, name: str) -> tuple[int, str | None] | None:
        entry = self.manifest.get(name)
        if not entry or self.store.size_of(name) != entry.get("size"):
            return None
        return int(entry["size"]), entry.get("sha1")

    def plan(self, archive: str) -> Plan:
        plan = Plan(archive)
        if not is_archive(archive):
            plan.problem = UsageError(
                "not an archive (expected .tar.gz, .tgz, .tar or a GeoTIFF part)", file=archive
            )
            return plan
        whole = self._published(archive)
        if archive != GEOTIFF_ARCHIVE:
            if whole is None:
                plan.problem = ArchiveNotDownloadedError(
                    f"not downloaded to {self.store.url}", file=archive
                )
            else:
                plan.sources, plan.sha1 = [(archive, whole[0])], whole[1]
            return plan
        reference = self.catalog.lookup(GEOTIFF_ARCHIVE).sha1
        parts = {p: self._published(p) for p in GEOTIFF_PART_NAMES}
        plan.parts_published = all(parts.values())
        if whole is not None:
            plan.sources, plan.sha1 = [(archive, whole[0])], whole[1]
        elif plan.parts_published:
            plan.sources = [(p, info[0]) for p, info in parts.items() if info]
        else:
            missing = ", ".join(p.rsplit(".", 1)[1] for p, info in parts.items() if not info)
            plan.problem = ArchiveNotDownloadedError(
                f"GeoTIFF parts missing from {self.store.url}: {missing}",
                file=archive,
                hint="run `xview2 download` for all six parts (.part-aa ... .part-af) first",
            )
        sha1 = reference or plan.sha1
        if sha1:
            plan.expected = {"sha1": sha1}
        return plan

    # -- running -------------------------------------------------------------------------
    def run(self, names: Sequence[str] | None = None) -> ExtractReport:
        archives = self.archives(names)
        self._emit("stage", "extract", total=len(archives), detail=", ".join(archives))
        results = []
        for archive in archives:
            started = time.monotonic()
            result = ArchiveResult(archive)
            try:
                self._run_one(self.plan(archive), result)
            except XView2Error as exc:
                self._fail(result, exc)
            except Exception as exc:  # a bug: reported per archive, like every failure
                log.exception("unexpected error while extracting %s", archive)
                self._fail(result, XView2Error(f"unexpected error: {exc!r}", file=archive))
            result.seconds = time.monotonic() - started
            results.append(result)
        return ExtractReport(results, self.store.url)

    def _fail(self, result: ArchiveResult, error: XView2Error) -> None:
        result.status, result.error = "failed", error
        log.info("extracting %s failed: %s", result.name, error)
        self._emit("failed", result.name, detail=str(error))

    def _run_one(self, plan: Plan, result: ArchiveResult) -> None:
        archive = plan.archive
        result.sources = [name for name, _ in plan.sources]
        record = records.load(self.store, archive)
        if record and plan.problem is None and not record.matches(plan.size, plan.sha1):
            log.info("%s changed since it was extracted; extracting it again", archive)
            records.forget(self.store, archive)
            record = None
        sink = sink_for(self.store, archive)
        if record is not None:
            index = records.load_index(self.store, record)
            missing = missing_members(sink, index) if index is not None else None
            if index is not None and not missing:
                result.status = "skipped"
                result.members_total = result.members_skipped = len(index)
                result.sha1 = record.sha1
                self._emit("skipped", archive, total=record.size, detail="already extracted")
                self._finish(plan, record, result)
                return
            if missing and plan.problem is not None:
                raise ArchiveNotDownloadedError(
                    f"{len(missing):,} extracted file(s) are missing (first: {missing[0]}) "
                    "and the archive is no longer at the destination",
                    file=archive,
                    hint="run `xview2 download` for it again, then extract",
                )
        if plan.problem is not None:
            raise plan.problem
        members = self._stream(plan, sink, result)
        if record is not None and record.members != len(members):
            log.warning(
                "%s: %d members now, %d at the previous extraction",
                archive,
                len(members),
                record.members,
            )
        missing = missing_members(sink, members)
        if missing:
            raise DestinationError(
                f"{len(missing):,} member(s) absent after extraction (first: {missing[0]})",
                file=archive,
                hint="run the extraction again",
            )
        record = records.ExtractionRecord(
            archive=archive,
            size=plan.size,
            sha1=result.sha1 or plan.sha1,
            sources=[{"name": n, "size": s} for n, s in plan.sources],
            members=len(members),
            bytes=sum(members.values()),
            folders=sorted({n.partition("/")[0] for n in members if "/" in n}),
            verified=bool(plan.expected),
        )
        records.save(self.store, record, members)
        result.status = "extracted"
        self._emit(
            "published",
            archive,
            total=plan.size,
            detail=f"{result.members_written:,} written, {result.members_skipped:,} already there",
        )
        self._finish(plan, record, result)

    def _stream(self, plan: Plan, sink: Sink, result: ArchiveResult) -> dict[str, int]:
        """Read the archive once and write every member not already in place."""
        archive, size = plan.archive, plan.size
        self._emit("started", archive, total=size)

        reserved = {MANIFEST, GEOTIFF_ARCHIVE, *GEOTIFF_PART_NAMES, *self.manifest.files}
        source = ChainedSource(
            self.store, plan.sources, archive=archive, digests=list(plan.expected)
        )
        reported = 0

        def report_bytes(at_least: int = MiB) -> None:
            nonlocal reported
            delta = source.consumed - reported
            if delta and delta >= at_least:
                reported += delta
                self._emit("bytes", archive, done=delta, total=size)

        pool = WriterPool(self.workers, self.budget)
        written: list[str] = []
        members: dict[str, int] = {}
        present: dict[str, dict[str, int]] = {}
        try:
            source.start()
            tar = TarStream(open_decoded(source, source.head()), archive, hint=CORRUPT_HINT)
            while (member := tar.next_member()) is not None:
                report_bytes()
                pool.check()
                name = safe_name(archive, member, reserved)
                if name is None:
                    continue
                if member.is_dir:
                    sink.make_dir(name)
                    continue
                result.members_total += 1
                top = name.partition("/")[0] if "/" in name else ""
                if top not in present:
                    present[top] = sink.existing(top)
                if name not in members and present[top].get(name) == member.size:
                    members[name] = member.size
                    result.members_skipped += 1
                    continue
                members[name] = member.size
                folder = sink.prepare(name)
                written.append(name)
                if member.size <= self.inline_max:
                    held = pool.acquire(member.size)
                    data = tar.read_data()
                    pool.submit(held, sink.write, name, folder, data, member.mode, member.mtime)
                else:
                    sink.write_stream(
                        name, folder, tar.data_reader(), member.size, member.mode, member.mtime
                    )
                result.members_written += 1
                result.bytes_written += member.size
            pool.drain()
            tar.drain()
            digests = source.finish()
            report_bytes(at_least=1)
        except UnsafeMemberError as exc:
            self._roll_back(pool, sink, written)
            raise UnsafeMemberError(
                exc.archive, exc.member, exc.reason, hint=REFUSED_HINT
            ) from None
        finally:
            pool.close()
            source.close()
            result.archive_bytes = source.consumed
        for algo, expected in plan.expected.items():
            if digests.get(algo) != expected:
                raise ArchiveChecksumError(archive, algo, expected, digests.get(algo, ""))
        result.sha1 = digests.get("sha1")
        return members

    def _roll_back(self, pool: WriterPool, sink: Sink, written: list[str]) -> None:
        try:
            pool.drain()
        except BaseException as exc:  # the refusal is what gets reported
            log.debug("a write failed while refusing the archive: %s", exc)
        log.info("removing %d member(s) written from a refused archive", len(written))
        sink.remove(written)

    # -- after a verified, complete extraction ----------------------------------------
    def _finish(self, plan: Plan, record: records.ExtractionRecord, result: ArchiveResult) -> None:
        keep: set[str] = set()
        if plan.archive == GEOTIFF_ARCHIVE and self.assemble_geotiff:
            keep.add(GEOTIFF_ARCHIVE)
            if self._published(GEOTIFF_ARCHIVE) is None:
                self._assemble(plan, record, result)
        if not self.remove_archives:
            return
        candidates = [s["name"] for s in record.sources]
        if plan.archive == GEOTIFF_ARCHIVE:
            candidates = [GEOTIFF_ARCHIVE, *GEOTIFF_PART_NAMES]
        removed = []
        for name in candidates:
            if name in keep or self.store.size_of(name) is None:
                continue
            self.store.delete(name)
            removed.append(name)
            log.info("removed %s after its verified extraction", name)
        if removed:
            result.removed = removed
            record.removed = sorted({*record.removed, *removed})
            records.update(self.store, record)

    def _assemble(
        self, plan: Plan, record: records.ExtractionRecord, result: ArchiveResult
    ) -> None:
        if not plan.parts_published:
            raise ArchiveNotDownloadedError(
                "cannot assemble: not all six parts are at the destination",
                file=GEOTIFF_ARCHIVE,
            )
        if not isinstance(self.store, Composer):
            raise DestinationError(
                f"cannot assemble the six parts at {self.store.url}: this store has no "
                "Composer capability (joining files without reading them through this "
                "process); the extraction itself is complete and the parts are kept",
                file=GEOTIFF_ARCHIVE,
                hint="run `xview2 extract` without --assemble-geotiff: the extracted files "
                "and the six parts are in place",
            )
        self._emit("stage", "assemble", detail=GEOTIFF_ARCHIVE)
        parts = tuple(GEOTIFF_PART_NAMES)
        size = self.store.compose(GEOTIFF_ARCHIVE, parts, workers=self.workers)
        expected = sum(self.store.size_of(p) or 0 for p in parts)
        if size != expected:
            raise DestinationError(
                f"assembled {size:,} bytes, expected {expected:,}", file=GEOTIFF_ARCHIVE
            )
        digests = {"sha1": record.sha1} if record.sha1 else {}
        self.manifest.record(
            GEOTIFF_ARCHIVE,
            size=size,
            digests=digests,
            verified=record.verified,
            source="assembled from " + ", ".join(parts),
        )
        result.assembled = True
        log.info("assembled %s (%d bytes) from its six parts", GEOTIFF_ARCHIVE, size)
