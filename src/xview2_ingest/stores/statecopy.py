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
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ..settings import state_dir
from .local import atomic_write, load_json

log = logging.getLogger(__name__)


class LocalStateCopy:
    """The local copy of one upload's state, named by a hash of where the upload goes."""

    def __init__(self, where: str):
        digest = hashlib.sha256(where.encode()).hexdigest()[:32]
        self.path = state_dir() / f"{digest}.json"
        self._usable = True

    def read(self) -> dict[str, Any] | None:
        return load_json(self.path)

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
