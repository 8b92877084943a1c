"""A local copy of a remote upload's resume state.

A remote store keeps each unfinished upload's resume state beside the upload, so any
machine can take it up.  Saving it there after every part costs a request each time, and
on a busy server those small requests slow the parts down.  So the state is saved after
every part to a small file on this machine (one rename, no request), and to the remote
store only every few seconds and when the run stops.  A rerun here resumes from whichever
copy is newer; a rerun elsewhere from the remote one, at most those few seconds behind.

The folder is ``XVIEW2_STATE_DIR``, else ``$XDG_STATE_HOME/xview2-ingest``, else
``~/.local/state/xview2-ingest``.  When it cannot be written, every checkpoint goes to the
remote store, as if there were no local copy.

:class:`RemoteState` is that scheme for any remote store (GCS and Azure use it);
:class:`LocalStateCopy` is its local half.

Beside it, a run that stops keeps the bytes of parts it could not finish or hash in a
sparse *spool* file (:class:`Spool`): a rerun here reads them back instead of fetching
them again, and sends them to the store again with the bytes it hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..settings import state_dir
from ..transfer.resume_state import InvalidState, read_file
from .local import atomic_write

log = logging.getLogger(__name__)


class LocalStateCopy:
    """The local copy of one upload's state, named by a hash of where the upload goes."""

    def __init__(self, where: str):
        digest = hashlib.sha256(where.encode()).hexdigest()[:32]
        self.path = state_dir() / f"{digest}.json"
        self._usable = True

    def read(self) -> dict[str, Any] | None:
        """The record, unchecked but parsed safely; None when missing or unparseable."""
        try:
            return read_file(self.path)
        except InvalidState as exc:
            log.warning("ignoring the local resume state %s: %s", self.path, exc)
            return None

    def spool(self, upload_id: str, part_size: int) -> Spool:
        """The spool of the upload ``upload_id`` beside this copy."""
        tag = hashlib.sha256(upload_id.encode()).hexdigest()[:16]
        return Spool(self.path.with_name(f"{self.path.stem}.{tag}.spool"), part_size)

    def write(self, record: dict[str, Any]) -> bool:
        """Save ``record``; False when there is no usable local folder."""
        if not self._usable:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # No fsync: the copy has to survive the process, not the machine; the remote
            # copy covers a lost machine.
            atomic_write(self.path, json.dumps(record).encode(), sync=False)
        except OSError as exc:
            log.warning(
                "cannot keep resume state in %s (%s); saving it to the destination only",
                self.path.parent,
                exc.strerror or exc,
            )
            self._usable = False
            return False
        return True

    def delete(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("cannot remove %s: %s", self.path, exc)


class Spool:
    """Bytes of unfinished or unhashed parts of one upload, kept on this machine.

    A sparse file with each part at its own offset; what it holds is recorded in the
    local state copy (``spool``: part -> bytes), never trusted further than that: bytes
    read back are hashed and sent to the store again, so a damaged spool can cost a
    checksum mismatch, never a wrong file.
    """

    def __init__(self, path: Path, part_size: int):
        self.path, self.part_size = path, part_size

    def write(self, index: int, data: memoryview) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                view, offset = data, index * self.part_size
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot keep part %d in %s: %s", index, self.path, exc.strerror or exc)
            return False
        return True

    def read(self, index: int, into: memoryview) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            view, offset = into, index * self.part_size
            while view:
                n = os.preadv(fd, [view], offset)
                if n <= 0:
                    return False
                view, offset = view[n:], offset + n
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def exists(self) -> bool:
        return self.path.exists()

    def delete(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("cannot remove %s: %s", self.path, exc)


REMOTE_STATE_INTERVAL = 5.0
"""Seconds between saves of resume state to the remote store while the local copy works."""


def hashed_of(record: dict[str, Any] | None) -> int:
    """How many parts the engine had hashed in a saved record (-1: none recorded)."""
    engine = (record or {}).get("engine")
    hashed = engine.get("hashed") if isinstance(engine, dict) else None
    return hashed if isinstance(hashed, int) else -1


class RemoteState:
    """One remote upload's resume record, kept by the scheme of this module's doc.

    ``save`` writes a record to the remote store (and raises what that store raises).
    Every record carries ``key`` (the upload's id at the remote store), so a local copy
    of another upload of the same name is never taken for this one.
    """

    def __init__(
        self,
        where: str,
        save: Callable[[dict[str, Any]], None],
        *,
        key: str = "upload_id",
        interval: float = REMOTE_STATE_INTERVAL,
    ):
        self.copy = LocalStateCopy(where)
        self._save_remote = save
        self._key, self._interval = key, interval
        self._saved_at = 0.0  # when the remote store last got the state (monotonic)
        self._unsaved: dict[str, Any] | None = None  # newer state only the local copy has

    def newest_engine_state(self, remote: dict[str, Any]) -> dict[str, Any] | None:
        """The engine state of ``remote``, or of the local copy when that got further."""
        engine = remote.get("engine")
        local = self.copy.read()
        if (
            local
            and local.get(self._key) == remote.get(self._key)
            and hashed_of(local) > hashed_of(remote)
        ):
            engine = local.get("engine")  # this machine got further
        return engine if isinstance(engine, dict) else None

    def save(self, record: dict[str, Any]) -> None:
        """Save ``record`` to both copies now (an upload's start)."""
        self.copy.write(record)
        self._push(record)

    def checkpoint(self, record: dict[str, Any]) -> None:
        """Save ``record`` locally, and remotely when the last remote save is old enough."""
        recent = time.monotonic() - self._saved_at < self._interval
        if self.copy.write(record) and recent:
            self._unsaved = record
            return
        self._push(record)

    def flush(self) -> None:
        """Give the remote store the newest state, if only the local copy has it."""
        if self._unsaved is not None:
            self._push(self._unsaved)

    def forget(self) -> None:
        """Drop the local copy (the remote record is the store's to delete)."""
        self._unsaved = None
        self.copy.delete()

    def _push(self, record: dict[str, Any]) -> None:
        self._save_remote(record)
        self._saved_at, self._unsaved = time.monotonic(), None
