"""What extracting one archive needs: the files to read, the SHA-1 each must have, and
what stands in the way (missing, truncated, not an archive), in words that say what to do.

The reference for each file read is the SHA-1 the manifest recorded when it was
downloaded (and verified against the catalog): an archive damaged at rest after that is
found while extracting, in the same pass.  The six GeoTIFF parts are read as one stream;
each part is checked against its own manifest entry, and the whole against the
catalog's ``xview2_geotiff.tgz`` entry when it has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..catalog import GEOTIFF_ARCHIVE, GEOTIFF_PART_NAMES, Catalog
from ..errors import UsageError, XView2Error
from ..manifest import Manifest
from ..stores import Store
from .errors import ArchiveNotDownloadedError, ArchiveTruncatedError, fetch_again

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


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
    source_sha1: dict[str, str] = field(default_factory=dict)
    """The SHA-1 each file had when it was downloaded (the manifest's), where known."""
    whole_sha1: str | None = None
    """The SHA-1 the whole stream must have: the catalog's for the GeoTIFF archive read
    from its parts, else the manifest's."""
    reference: str = "verified at download"
    """Where ``whole_sha1`` comes from, for messages."""
    problem: XView2Error | None = None
    parts_published: bool = False

    @property
    def size(self) -> int:
        return sum(size for _, size in self.sources)

    @property
    def sha1(self) -> str | None:
        """The archive's identity for the extraction record."""
        return self.whole_sha1

    @property
    def verifiable(self) -> bool:
        """Every file read has a SHA-1 to be checked against."""
        return bool(self.sources) and all(n in self.source_sha1 for n, _ in self.sources)


def _state(store: Store, manifest: Manifest, name: str) -> tuple[int, str | None] | XView2Error:
    """(size, manifest SHA-1) of a published file, or what is wrong with it."""
    entry = manifest.get(name)
    if not entry:
        return ArchiveNotDownloadedError(f"not downloaded to {store.url}", file=name)
    here = store.size_of(name)
    if here is None:
        why = (
            "removed after its verified extraction"
            if entry.get("removed")
            else "recorded in manifest.json but absent"
        )
        return ArchiveNotDownloadedError(
            f"{why} from {store.url}",
            file=name,
            hint=fetch_again(store.url, removed=bool(entry.get("removed"))),
        )
    if here != entry.get("size"):
        return ArchiveTruncatedError(name, store.url, here, int(entry.get("size") or 0))
    return here, entry.get("sha1")


def make_plan(store: Store, manifest: Manifest, catalog: Catalog, archive: str) -> Plan:
    plan = Plan(archive)
    if not is_archive(archive):
        plan.problem = UsageError(
            "not an archive (expected .tar.gz, .tgz, .tar or a GeoTIFF part)", file=archive
        )
        return plan
    whole = _state(store, manifest, archive)
    if archive != GEOTIFF_ARCHIVE or isinstance(whole, tuple):
        if isinstance(whole, tuple):
            plan.sources = [(archive, whole[0])]
            if whole[1]:
                plan.source_sha1[archive] = plan.whole_sha1 = whole[1]
        else:
            plan.problem = whole
        if archive == GEOTIFF_ARCHIVE:
            plan.parts_published = all(
                isinstance(_state(store, manifest, p), tuple) for p in GEOTIFF_PART_NAMES
            )
        return plan
    parts = {p: _state(store, manifest, p) for p in GEOTIFF_PART_NAMES}
    plan.parts_published = all(isinstance(s, tuple) for s in parts.values())
    if plan.parts_published:
        for name, state in parts.items():
            assert isinstance(state, tuple)
            plan.sources.append((name, state[0]))
            if state[1]:
                plan.source_sha1[name] = state[1]
        plan.whole_sha1 = catalog.lookup(GEOTIFF_ARCHIVE).sha1
        plan.reference = "the catalog says"
        return plan
    broken = [s for s in parts.values() if isinstance(s, ArchiveTruncatedError)]
    if broken:
        plan.problem = broken[0]
        return plan
    missing = ", ".join(p.rsplit(".", 1)[1] for p, s in parts.items() if not isinstance(s, tuple))
    plan.problem = ArchiveNotDownloadedError(
        f"GeoTIFF parts missing from {store.url}: {missing}",
        file=archive,
        hint="run `xview2 download --links LINKS_FILE` for all six parts "
        "(.part-aa ... .part-af) first",
    )
    return plan


__all__ = ["ARCHIVE_SUFFIXES", "Plan", "archive_of", "is_archive", "make_plan"]
