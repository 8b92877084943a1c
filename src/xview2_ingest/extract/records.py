"""What a verified extraction leaves behind: ``DEST/.xview2/extract/<archive>.json``.

The record (a few hundred bytes) holds the archive's identity (size, the SHA-1 checked
while extracting, the files it was read from with their own SHA-1), whether that SHA-1
matched a reference (``verified``), the member count and bytes, and the name of a member
index, ``<archive>.members.gz``: gzipped ``size<TAB>crc32<TAB>name`` lines, one per
member, about 20 bytes each.  The CRC-32 of every member is computed from the bytes
written, in the same pass that checked the archive's SHA-1, so the index says what each
extracted file must hold.

A rerun compares the index with one listing of the destination (sizes: no read at all);
``check`` also reads every extracted file and compares its CRC-32 (:mod:`.check`).
Member names never hold a control character (:mod:`.safety` refuses them), so one line
is one member.

Format versions: 2 (this one).  A version 1 record (sizes only, no digests; written by
releases before member digests) is loaded with ``digests=False``: its members are
trusted for nothing but their presence.  The extractor rebuilds it by extracting the
archive again when the archive is there (see :mod:`.core`); when the archive was removed
the old record stays in use, and ``check`` says the contents cannot be checked.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import XView2Error
from ..stores import Store

log = logging.getLogger(__name__)

RECORD_DIR = ".xview2/extract"
VERSION = 2
READABLE_VERSIONS = (1, 2)

Members = dict[str, tuple[int, int]]
"""Member name -> (size, CRC-32); the CRC is -1 where an old record has none."""
NO_CRC = -1


def _crc32() -> Callable[[Any, int], int]:
    """ISA-L's CRC-32 where installed (several times faster; the same values), else zlib's."""
    try:
        from isal import isal_zlib

        return isal_zlib.crc32  # type: ignore[no-any-return]
    except ImportError:
        return zlib.crc32


crc32: Callable[[Any, int], int] = _crc32()
"""``crc32(data, value)``: the running CRC-32 of the members (``value`` 0 to start)."""


def record_name(archive: str) -> str:
    return f"{RECORD_DIR}/{archive}.json"


def index_name(archive: str) -> str:
    return f"{RECORD_DIR}/{archive}.members.gz"


@dataclass
class ExtractionRecord:
    archive: str
    size: int
    """Compressed size of the whole archive."""
    sha1: str | None
    """SHA-1 of the whole archive, computed while extracting."""
    sources: list[dict[str, Any]]
    """The files read, in order: ``{"name", "size", "sha1"}``."""
    members: int
    bytes: int
    folders: list[str] = field(default_factory=list)
    index: str = ""
    index_sha1: str = ""
    verified: bool = False
    """True when every byte read was checked against a SHA-1 while extracting (each file
    the manifest's, or the whole GeoTIFF archive the catalog's): only then are archives
    removed."""
    completed_at: str = ""
    removed: list[str] = field(default_factory=list)
    """Source files deleted after the extraction (``remove_archives``)."""
    digests: bool = True
    """Whether the member index holds a CRC-32 per member (False: a version 1 record)."""
    version: int = VERSION

    def matches(self, size: int, sha1: str | None) -> bool:
        """Same archive: same size, and same SHA-1 when both sides know it."""
        return self.size == size and (not (self.sha1 and sha1) or self.sha1 == sha1)


def load(store: Store, archive: str) -> ExtractionRecord | None:
    try:
        raw = store.read_bytes(record_name(archive))
    except XView2Error as exc:
        log.warning("cannot read the extraction record of %s: %s", archive, exc)
        return None
    if not raw:
        return None
    try:
        data = json.loads(raw)
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            return None
        known = ExtractionRecord.__dataclass_fields__
        record = ExtractionRecord(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring an unreadable extraction record for %s", archive)
        return None
    if version == 1:
        record.digests = False
    return record


def load_index(store: Store, record: ExtractionRecord) -> Members | None:
    try:
        raw = store.read_bytes(record.index) if record.index else None
    except XView2Error:
        return None
    if raw is None or hashlib.sha1(raw).hexdigest() != record.index_sha1:
        return None
    members: Members = {}
    try:
        for line in gzip.decompress(raw).decode("utf-8").split("\n"):
            if not line:
                continue
            if record.digests:
                size, crc, name = line.split("\t", 2)
                members[name] = (int(size), int(crc, 16))
            else:
                size, _, name = line.partition("\t")
                members[name] = (int(size), NO_CRC)
    except (OSError, ValueError, EOFError):
        return None
    return members if len(members) == record.members else None


def save(store: Store, record: ExtractionRecord, members: Members) -> None:
    """Write the member index, then the record naming it (so a record is never without)."""
    lines = "".join(f"{size}\t{crc:08x}\t{name}\n" for name, (size, crc) in sorted(members.items()))
    blob = gzip.compress(lines.encode("utf-8"), compresslevel=6, mtime=0)
    record.index = index_name(record.archive)
    record.index_sha1 = hashlib.sha1(blob).hexdigest()
    record.members = len(members)
    record.bytes = sum(size for size, _ in members.values())
    record.digests = True
    record.version = VERSION
    record.completed_at = datetime.now(UTC).isoformat(timespec="seconds")
    store.write_bytes(record.index, blob)
    update(store, record)


def update(store: Store, record: ExtractionRecord) -> None:
    store.write_bytes(
        record_name(record.archive), json.dumps(asdict(record), indent=2).encode() + b"\n"
    )


def forget(store: Store, archive: str) -> None:
    for name in (record_name(archive), index_name(archive)):
        try:
            store.delete(name)
        except XView2Error as exc:
            log.warning("cannot delete %s: %s", name, exc)
