"""What a finished extraction leaves behind: ``DEST/.xview2/extract/<archive>.json``.

The record (a few hundred bytes) holds the archive's identity (size, SHA1 when known,
the files it was read from), the member count and bytes, and the name of a member index,
``<archive>.members.gz``: gzipped ``size<TAB>name`` lines, about 10 bytes per member.  A
rerun compares that index with one listing of the destination (no archive read at all);
only when something is missing or has another size does it stream the archive again, and
then writes only those members.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import XView2Error
from ..stores import Store

log = logging.getLogger(__name__)

RECORD_DIR = ".xview2/extract"
VERSION = 1


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
    """SHA1 of the whole archive: computed while extracting, or the manifest's."""
    sources: list[dict[str, Any]]
    """The files read, in order: ``{"name", "size"}``."""
    members: int
    bytes: int
    folders: list[str] = field(default_factory=list)
    index: str = ""
    index_sha1: str = ""
    verified: bool = False
    """True when the whole archive's digest matched a reference while extracting."""
    completed_at: str = ""
    removed: list[str] = field(default_factory=list)
    """Source files deleted after the extraction (``remove_archives``)."""
    version: int = VERSION

    def matches(self, size: int, sha1: str | None) -> bool:
        """Same archive: same size, and same SHA1 when both sides know it."""
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
        if data.get("version") != VERSION:
            return None
        known = ExtractionRecord.__dataclass_fields__
        return ExtractionRecord(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring an unreadable extraction record for %s", archive)
        return None


def load_index(store: Store, record: ExtractionRecord) -> dict[str, int] | None:
    try:
        raw = store.read_bytes(record.index) if record.index else None
    except XView2Error:
        return None
    if raw is None or hashlib.sha1(raw).hexdigest() != record.index_sha1:
        return None
    members: dict[str, int] = {}
    try:
        for line in gzip.decompress(raw).decode("utf-8").splitlines():
            size, _, name = line.partition("\t")
            members[name] = int(size)
    except (OSError, ValueError, EOFError):
        return None
    return members if len(members) == record.members else None


def save(store: Store, record: ExtractionRecord, members: dict[str, int]) -> None:
    """Write the member index, then the record naming it (so a record is never without)."""
    lines = "".join(f"{size}\t{name}\n" for name, size in sorted(members.items()))
    blob = gzip.compress(lines.encode("utf-8"), compresslevel=6, mtime=0)
    record.index = index_name(record.archive)
    record.index_sha1 = hashlib.sha1(blob).hexdigest()
    record.members = len(members)
    record.bytes = sum(members.values())
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
