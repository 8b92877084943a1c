"""Unpack downloaded archives at their destination: safe, streaming, verified, resumable.

One archive at a time, in one pass and in bounded memory::

    store.open_read (1 or 6 files)  ->  read-ahead thread (SHA-1, progress)  ->  gzip decoder
        ->  tar headers + safety checks (main thread)  ->  writer threads (staged members)
        ->  end of stream: gzip CRC and size, SHA-1 against the manifest  ->  publish

Nothing is copied locally first: for S3 the archive object is read as one GET stream and
every member becomes one object.  No member is published before the whole stream was
checked: members are staged (:mod:`.sinks`) and published only when the gzip trailer and
the SHA-1 of every file read match; a failure anywhere leaves the destination as it was.
An archive whose SHA-1 no longer matches the manifest is marked corrupt there, so that
``status`` says so and ``download`` fetches it again.  When the same member name comes
twice, the last copy wins, as with tar.

See :mod:`.safety` for what is refused, :mod:`.records` for what a rerun skips and
:mod:`.check` for ``check``, which reads every extracted file again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ..archive.decode import open_decoded
from ..archive.tarstream import TarStream
from ..catalog import GEOTIFF_ARCHIVE, GEOTIFF_PART_NAMES, Catalog
from ..errors import DestinationError, UsageError, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..manifest import MANIFEST, Manifest
from ..settings import resolve_catalog
from ..stores import Composer, Store
from . import records
from .check import changed_members
from .errors import (
    CORRUPT_HINT,
    REFUSED_HINT,
    ArchiveChecksumError,
    ArchiveNotDownloadedError,
    CorruptArchiveError,
    UnsafeMemberError,
    fetch_again,
)
from .plan import Plan, archive_of, is_archive, make_plan
from .report import ArchiveResult, ExtractReport
from .safety import safe_name
from .sinks import Sink, Staged, WriterPool, missing_members, sink_for
from .source import ChainedSource

log = logging.getLogger(__name__)

MiB = 1 << 20
MEMORY_BUDGET = 64 * MiB
"""Member bytes read from the archive but not yet written, at most."""
INLINE_MAX = 16 * MiB
"""Members up to this size are read whole and written by the pool; larger ones stream."""


class Extractor:
    """Extracts archives into one store; :func:`extract` is the public entry point.

    ``check`` reads every member already in place again and compares its CRC-32 with the
    extraction record (a plain rerun compares sizes); what differs is written again.
    """

    def __init__(
        self,
        store: Store,
        *,
        catalog: Catalog | None = None,
        progress: ProgressCallback | None = None,
        remove_archives: bool = False,
        assemble_geotiff: bool = False,
        check: bool = False,
        workers: int = 8,
        memory_budget: int = MEMORY_BUDGET,
    ):
        if workers < 1:
            raise UsageError("workers must be at least 1")
        self.store = store
        self.catalog = catalog if catalog is not None else resolve_catalog(None, ())
        self.progress = progress or no_progress
        self.remove_archives = remove_archives
        self.assemble_geotiff = assemble_geotiff
        self.check = check
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

    def plan(self, archive: str) -> Plan:
        return make_plan(self.store, self.manifest, self.catalog, archive)

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
                self._fail(result, XView2Error.unexpected(exc, file=archive))
            result.seconds = time.monotonic() - started
            results.append(result)
        return ExtractReport(results, self.store.url)

    def _fail(self, result: ArchiveResult, error: XView2Error) -> None:
        result.status, result.error = "failed", error
        log.info("extracting %s failed: %s", result.name, error)
        self._emit("failed", result.name, detail=str(error))

    def _in_place(
        self, plan: Plan, record: records.ExtractionRecord, result: ArchiveResult
    ) -> records.Members | None:
        """The members of ``record`` in place at the destination (all of them: nothing to
        do), or None when its member index is unreadable."""
        index = records.load_index(self.store, record)
        if index is None:
            return None
        sink = sink_for(self.store, plan.archive, self.workers)
        bad = set(missing_members(sink, index))
        if self.check:
            if not record.digests:
                raise XView2Error(
                    "cannot check the extracted files: their record, from an older "
                    "version, holds no digests",
                    file=plan.archive,
                    hint="download the archive again and run `xview2 extract` to rebuild "
                    f"the record ({fetch_again(self.store.url, removed=True)})",
                )
            self._emit("info", plan.archive, detail=f"reading {len(index) - len(bad):,} files")
            changed = changed_members(
                self.store, index, [n for n in index if n not in bad], workers=self.workers
            )
            result.members_checked = len(index) - len(bad)
            result.members_changed = len(changed)
            bad.update(changed)
        if bad and plan.problem is not None:
            removed = any(self.manifest.is_removed(s["name"]) for s in record.sources)
            raise ArchiveNotDownloadedError(
                f"{len(bad):,} extracted file(s) are missing or differ from the verified "
                f"extraction (first: {min(bad)}) and the archive is not at the destination",
                file=plan.archive,
                hint=fetch_again(self.store.url, removed=removed)
                + "; then run `xview2 extract` again",
            )
        return {n: v for n, v in index.items() if n not in bad}

    def _run_one(self, plan: Plan, result: ArchiveResult) -> None:
        archive = plan.archive
        result.sources = [name for name, _ in plan.sources]
        record = records.load(self.store, archive)
        if record and plan.problem is None:
            if not record.matches(plan.size, plan.sha1):
                log.info("%s changed since it was extracted; extracting it again", archive)
                record = None
            elif not record.digests:
                log.info("%s: rebuilding an extraction record without digests", archive)
                record = None
        keep: records.Members = {}
        if record is not None:
            in_place = self._in_place(plan, record, result)
            if in_place is not None and len(in_place) == record.members:
                result.status = "skipped"
                result.members_total = result.members_skipped = record.members
                result.sha1, result.verified = record.sha1, record.verified
                self._emit("skipped", archive, total=record.size, detail="already extracted")
                self._finish(plan, record, result)
                return
            keep = in_place or {}
        if plan.problem is not None:
            raise plan.problem
        members = self._stream(plan, result, keep)
        record = records.ExtractionRecord(
            archive=archive,
            size=plan.size,
            sha1=result.sha1,
            sources=[
                {"name": n, "size": s, "sha1": plan.source_sha1.get(n)} for n, s in plan.sources
            ],
            members=len(members),
            bytes=0,
            folders=sorted({n.partition("/")[0] for n in members if "/" in n}),
            verified=result.verified,
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

    # -- the one pass ----------------------------------------------------------------------
    def _stream(self, plan: Plan, result: ArchiveResult, keep: records.Members) -> records.Members:
        """Read the archive once, stage every member not in ``keep``, check the whole
        stream, then publish; the members of the archive (name -> size, CRC-32)."""
        archive, size = plan.archive, plan.size
        self._emit("started", archive, total=size)
        sink = sink_for(self.store, archive, self.workers)
        reserved = {MANIFEST, GEOTIFF_ARCHIVE, *GEOTIFF_PART_NAMES, *self.manifest.files}
        source = ChainedSource(
            self.store, plan.sources, archive=archive, digests=["sha1"], per_part=True
        )
        reported = 0

        def report_bytes(at_least: int = MiB) -> None:
            nonlocal reported
            delta = source.consumed - reported
            if delta and delta >= at_least:
                reported += delta
                self._emit("bytes", archive, done=delta, total=size)

        pool = WriterPool(self.workers, self.budget)
        staged: dict[str, Staged] = {}
        superseded: list[Staged] = []
        sizes: dict[str, int] = {}
        crcs: dict[Staged, int] = {}
        purged: set[str] = set()

        def write(item: Staged, data: bytes, mode: int, mtime: float) -> None:
            crcs[item] = sink.write(item, data, mode, mtime)

        try:
            source.start()
            tar = TarStream(open_decoded(source, source.head()), archive, hint=CORRUPT_HINT)
            while (member := tar.next_member()) is not None:
                report_bytes()
                pool.check()
                name = safe_name(archive, member, reserved)
                if name is None:
                    continue
                top = name.partition("/")[0] if "/" in name else ""
                if top not in purged:
                    sink.purge(top)
                    purged.add(top)
                if member.is_dir:
                    sink.make_dir(name)
                    continue
                result.members_total += 1
                if name in keep:
                    result.members_skipped += 1
                    continue
                item = sink.reserve(name)
                if name in staged:
                    superseded.append(staged[name])
                staged[name], sizes[name] = item, member.size
                if member.size <= self.inline_max:
                    held = pool.acquire(member.size)
                    try:
                        data = tar.read_data()
                    except BaseException:
                        pool.release(held)  # no write will come for it
                        raise
                    pool.submit(held, write, item, data, member.mode, member.mtime)
                else:
                    crcs[item] = sink.write_stream(
                        item, tar.data_reader(), member.size, member.mode, member.mtime
                    )
                result.bytes_written += member.size
            pool.drain()
            tar.drain()
            digests = source.finish()
            report_bytes(at_least=1)
            self._verify(plan, source, digests, result)
            sink.discard(superseded)
            sink.publish(staged.values())
        except BaseException as exc:
            self._abandon(pool, sink, [*superseded, *staged.values()])
            if isinstance(exc, UnsafeMemberError):
                raise UnsafeMemberError(
                    exc.archive, exc.member, exc.reason, hint=REFUSED_HINT
                ) from None
            if isinstance(exc, CorruptArchiveError):
                raise self._diagnose(plan, source, exc) from None
            raise
        finally:
            pool.close()
            source.close()
            result.archive_bytes = source.consumed
        result.members_written = len(staged)
        result.duplicates = len(superseded)
        members = dict(keep)
        members.update({n: (sizes[n], crcs[item]) for n, item in staged.items()})
        return members

    def _abandon(self, pool: WriterPool, sink: Sink, items: list[Staged]) -> None:
        """After a failure: wait for the writes under way, then drop every staged member."""
        try:
            pool.drain()
        except BaseException as exc:  # the first failure is what gets reported
            log.debug("a write failed while giving up the archive: %s", exc)
        if items:
            log.info("dropping %d staged member(s); nothing was published", len(items))
        sink.discard(items)
        sink.forget_created_dirs()

    def _verify(
        self, plan: Plan, source: ChainedSource, digests: dict[str, str], result: ArchiveResult
    ) -> None:
        """Every file read must have the SHA-1 it was downloaded with, and the whole the
        reference's; a file whose bytes changed is marked corrupt in the manifest."""
        changed = {
            name: actual
            for name, actual in source.part_sha1.items()
            if plan.source_sha1.get(name) not in (None, actual)
        }
        if changed:
            for name, actual in changed.items():
                self.manifest.mark_corrupt(name, {"sha1": actual})
            name, actual = next(iter(changed.items()))
            raise ArchiveChecksumError(
                name, "sha1", plan.source_sha1[name], actual, hint=fetch_again(self.store.url)
            )
        whole = digests.get("sha1")
        if plan.whole_sha1 and whole != plan.whole_sha1:
            raise ArchiveChecksumError(
                plan.archive, "sha1", plan.whole_sha1, whole or "", reference=plan.reference
            )
        result.sha1 = whole
        # every byte read matched: the whole against its reference, or each file its own
        result.verified = bool(plan.whole_sha1) or plan.verifiable
        for name, _ in plan.sources:
            if self.manifest.is_corrupt(name):  # put back as it was downloaded
                self.manifest.mark_checked(name)

    def _diagnose(
        self, plan: Plan, source: ChainedSource, error: CorruptArchiveError
    ) -> XView2Error:
        """An archive the reader could not read: damaged since download (its SHA-1 differs:
        marked corrupt, fetch it again), or the very file downloaded (it never was a good
        archive)."""
        self._emit("info", plan.archive, detail="unreadable; hashing the rest to tell why")
        if source.drain() is None:
            return error
        changed = {
            name: actual
            for name, actual in source.part_sha1.items()
            if plan.source_sha1.get(name) not in (None, actual)
        }
        for name, actual in changed.items():
            self.manifest.mark_corrupt(name, {"sha1": actual})
        if changed:
            name, actual = next(iter(changed.items()))
            return ArchiveChecksumError(
                name,
                "sha1",
                plan.source_sha1[name],
                actual,
                detail=error.message,
                hint=fetch_again(self.store.url),
            )
        if plan.verifiable:
            return CorruptArchiveError(
                f"{error.message}; it is the very file that was downloaded (its SHA-1 "
                "matches the manifest)",
                file=plan.archive,
                hint="nothing from it was published; downloading it again gives the same "
                "bytes: check where it came from (`xview2 status`, the catalog entry)",
            )
        return error

    # -- after a verified, complete extraction ----------------------------------------
    def _finish(self, plan: Plan, record: records.ExtractionRecord, result: ArchiveResult) -> None:
        keep: set[str] = set()
        if plan.archive == GEOTIFF_ARCHIVE and self.assemble_geotiff:
            keep.add(GEOTIFF_ARCHIVE)
            if self.store.size_of(GEOTIFF_ARCHIVE) is None:
                self._assemble(plan, record, result)
        if not self.remove_archives:
            return
        candidates = [s["name"] for s in record.sources]
        if plan.archive == GEOTIFF_ARCHIVE:
            candidates = [GEOTIFF_ARCHIVE, *GEOTIFF_PART_NAMES]
        present = [n for n in candidates if n not in keep and self.store.size_of(n) is not None]
        if not record.verified:
            result.kept = present
            log.warning(
                "%s: not removed: its extraction was not verified against a SHA-1", plan.archive
            )
            return
        removed = []
        for name in present:
            self.store.delete(name)
            self.manifest.mark_removed(name)
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
