"""``extract --check``: read every extracted file again and compare it with its record.

The member index of a verified extraction holds each member's size and CRC-32
(:mod:`.records`).  A plain rerun compares sizes only, from one listing; this reads the
bytes of every member (plain files locally, one GET per object elsewhere) on a few
threads and returns the names whose CRC-32 differs, so that the extractor writes them
again from the archive.  The cost of each, on 1 GiB: ``docs/benchmarks-extract.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ..errors import XView2Error
from ..stores import LocalFiles, Store
from .records import Members, crc32

log = logging.getLogger(__name__)

CHUNK = 4 << 20


def _crc_of_file(path: str) -> int | None:
    crc = 0
    try:
        with open(path, "rb", buffering=0) as fh:
            while chunk := fh.read(CHUNK):
                crc = crc32(chunk, crc)
    except OSError:
        return None
    return crc


def _crc_of_object(store: Store, name: str) -> int | None:
    crc = 0
    try:
        with store.open_read(name) as fh:
            while chunk := fh.read(CHUNK):
                crc = crc32(chunk, crc)
    except XView2Error:
        return None
    except Exception as exc:  # a network error of the store's stream
        log.info("cannot read %s again: %s", name, exc)
        return None
    return crc


def changed_members(
    store: Store, members: Members, names: Iterable[str], *, workers: int = 8
) -> list[str]:
    """Those of ``names`` whose bytes at the destination do not have the recorded CRC-32
    (unreadable ones included)."""
    todo = sorted(names)
    if isinstance(store, LocalFiles):
        root = os.fspath(store.root)

        def crc_of(name: str) -> int | None:
            return _crc_of_file(os.path.join(root, name))

        threads = min(workers, 4)  # a local disk: a few readers keep it busy
    else:

        def crc_of(name: str) -> int | None:
            return _crc_of_object(store, name)

        threads = workers
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="xview2-check") as pool:
        crcs = list(pool.map(crc_of, todo))
    return [name for name, crc in zip(todo, crcs, strict=True) if crc != members[name][1]]


__all__ = ["changed_members"]
