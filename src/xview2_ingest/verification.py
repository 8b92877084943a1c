"""Hash published files again and compare them with the catalog and the manifest.

A file verified at download can rot later (a disk, a copy by hand, an edited object).
``verify`` reads every byte back and computes its digest again: on a store that can read
ranges (:class:`~.stores.PartReader`: a folder, S3) as parallel ranged reads hashed
strictly in order in bounded memory (:func:`~.transfer.inorder.hash_in_order`), elsewhere
as one stream.  A file that no longer matches is named with the digest expected and the
one found, and marked ``corrupt`` in the manifest, so ``status`` shows it and the next
``download`` fetches it again without ``--force``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .catalog import Catalog
from .errors import ChecksumMismatchError, ContentError, DestinationError, XView2Error
from .events import Event, ProgressCallback, no_progress
from .manifest import MANIFEST, Manifest
from .reports import VerifyReport, VerifyResult
from .stores import LocalFiles, PartReader, Store
from .transfer.buffers import BufferPool
from .transfer.digest import Digest
from .transfer.inorder import hash_in_order

log = logging.getLogger(__name__)

MiB = 1 << 20
PART_SIZE = 8 * MiB
LOCAL_WINDOW = 3
"""Reads ahead on a local disk: enough to keep the hash busy while the disk works."""
REMOTE_WINDOW = 8
"""Ranged GETs at once on an object store."""


class CorruptFileError(ChecksumMismatchError):
    """A published file whose bytes no longer hash to its reference digest."""

    def __init__(
        self, file: str, algorithm: str, expected: str, actual: str, reference: str, dest: str
    ):
        self.algorithm, self.expected, self.actual = algorithm, expected, actual
        self.reference = reference
        ContentError.__init__(
            self,
            f"{algorithm} mismatch: expected {expected} (from the {reference}), got {actual}; "
            "marked corrupt",
            file=file,
            hint=f"run `xview2 download --dest {dest}` with its link to fetch it again",
        )


class Verifier:
    """Hashes published files of one store again; :meth:`run` returns the report."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        *,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        part_size: int = PART_SIZE,
    ):
        self.store, self.catalog = store, catalog
        self.progress = progress or no_progress
        self.manifest = Manifest(store)
        local = isinstance(store, LocalFiles)
        self.window = workers or (LOCAL_WINDOW if local else REMOTE_WINDOW)
        self.part_size = part_size
        self.pool = BufferPool(2 * self.window * part_size, page_aligned=False)

    def names(self, names: Sequence[str] | None) -> list[str]:
        """The names asked for, else every file the manifest records (but those removed
        after their verified extraction: nothing is there to hash)."""
        if names:
            return list(dict.fromkeys(names))
        files = self.manifest.files
        return sorted(n for n in files if n != MANIFEST and not files[n].get("removed"))

    def run(self, names: Sequence[str] | None = None) -> VerifyReport:
        with ThreadPoolExecutor(self.window, thread_name_prefix="xview2-verify") as executor:
            results = [self.one(name, executor) for name in self.names(names)]
        return VerifyReport(self.store.url, results)

    def references(self, name: str) -> list[tuple[str, dict[str, str]]]:
        """(where from, digests) to compare with: the catalog's, then the manifest's."""
        refs = []
        catalog = self.catalog.lookup(name).expected_digests()
        if catalog:
            refs.append(("catalog", catalog))
        record = self.manifest.get(name) or {}
        recorded = {a: record[a] for a in ("sha1", "md5") if isinstance(record.get(a), str)}
        if recorded:
            refs.append(("manifest", recorded))
        return refs

    def one(self, name: str, executor: ThreadPoolExecutor) -> VerifyResult:
        started = time.monotonic()
        result = VerifyResult(name, "failed")
        try:
            self._check(name, result, executor)
        except XView2Error as exc:
            result.status, result.error = "failed", exc
            self.progress(Event("failed", name, detail=str(exc)))
        result.seconds = time.monotonic() - started
        return result

    def _check(self, name: str, result: VerifyResult, executor: ThreadPoolExecutor) -> None:
        size = result.size = self.store.size_of(name)
        if size is None:
            result.status = "missing"
            result.error = XView2Error(
                "is not at the destination",
                file=name,
                hint=f"run `xview2 download` with its link (--dest {self.store.url})",
            )
            self.progress(Event("failed", name, detail=str(result.error)))
            return
        refs = self.references(name)
        known = {a for _, digests in refs for a in digests}
        algo = "md5" if known == {"md5"} else "sha1"  # SHA-1 decides, as at download
        digest = Digest(algo)
        self.progress(Event("started", name, total=size))
        self._hash(name, size, [digest], executor)
        actual = digest.hexdigest()
        result.actual = {algo: actual}
        found = [(origin, digests[algo]) for origin, digests in refs if algo in digests]
        if not found:
            result.status = "unverifiable"
            return
        origin, expected = found[0]
        result.expected, result.reference = {algo: expected}, origin
        if actual != expected:
            result.status = "corrupt"
            result.error = CorruptFileError(name, algo, expected, actual, origin, self.store.url)
            if self.manifest.get(name) is not None:
                self.manifest.mark_corrupt(name, result.actual)
            self.progress(Event("failed", name, detail=str(result.error)))
            return
        result.status = "ok"
        if self.manifest.get(name) is not None:
            self.manifest.mark_checked(name)
        self.progress(Event("published", name, total=size, detail="intact"))

    def _hash(
        self, name: str, size: int, digests: list[Digest], executor: ThreadPoolExecutor
    ) -> None:
        def on_part(_: int, n: int) -> None:
            self.progress(Event("bytes", name, done=n, total=size))

        store = self.store
        if isinstance(store, PartReader):
            part = self.part_size
            hash_in_order(
                range(math.ceil(size / part)),
                lambda i: min(part, size - i * part),
                lambda i, view: store.read_into(name, i * part, view),
                digests,
                self.pool,
                executor,
                window=self.window,
                on_part=on_part,
            )
            return
        self._hash_stream(name, size, digests, on_part)

    def _hash_stream(self, name: str, size: int, digests: list[Digest], on_part) -> None:  # type: ignore[no-untyped-def]
        """A store without ranged reads: one forward stream."""
        buf = bytearray(self.part_size)
        seen = 0
        with self.store.open_read(name) as stream:
            while True:
                n = stream.readinto(buf)  # type: ignore[attr-defined]
                if not n:
                    break
                for digest in digests:
                    digest.update(memoryview(buf)[:n])
                seen += n
                on_part(0, n)
        if seen != size:
            raise DestinationError(f"read {seen:,} bytes of {size:,}", file=name)
