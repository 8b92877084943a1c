"""Parts sent in groups: consecutive parts as one object, each group written in order.

A store whose objects are joined at a cost per object (GCS's compose takes 32 sources a
call, and a server may copy every byte it composes) keeps the objects few by sending
``group`` consecutive parts of the engine's plan as one object, through one upload that
takes them in order (a GCS resumable upload, one chunk per part).  The engine's parts,
buffers and digest stay as they are; what changes is when a part is durable: only once
its whole group is (see :class:`~.base.GroupedParts`).

:class:`GroupWriter` does the ordering: a part whose group's earlier parts are not yet
sent waits for them (another lane is fetching them), one sender per group at a time.
The store provides the two requests (open a group's upload; send one part of it).

Why the waiting cannot deadlock the engine: a write waits only for lower parts of its
own group.  Lanes take parts in index order within their spans, and spans are handed
out in index order, so the lowest part not yet sent belongs to a lane that is fetching
or sending it and waits for nothing lower; the buffer pool always lets the digest's next
part be fetched, and parts written behind the lanes each get a thread of their own
(:mod:`..transfer.spans`).  When the transfer stops, :meth:`GroupWriter.interrupt`
fails the waiting writes instead of leaving them for parts that will not come.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DestinationError
from ..transfer.resume_state import part_count

log = logging.getLogger(__name__)

WAIT_STEP = 0.2
"""Seconds between looks at whether a waiting part was interrupted."""


@dataclass
class _Session:
    handle: str | None  # the group's upload (its URL), once opened
    next: int  # the part to send next
    failed: bool = False


class GroupWriter:
    """Sends the parts of each group in index order, whichever threads write them.

    ``open_group(group)`` opens a group's upload and returns its URL;
    ``send(url, group, index, data, last)`` sends one part and returns the finished
    object's generation when ``last`` (else None).  ``on_done(group, generation)`` is
    called once a group's object is complete.
    """

    def __init__(
        self,
        name: str,
        size: int,
        part_size: int,
        group: int,
        open_group: Callable[[int], str],
        send: Callable[[str, int, int, memoryview, bool], int | None],
        on_done: Callable[[int, int], None],
    ):
        self.name, self.size, self.part_size, self.group = name, size, part_size, group
        self._open, self._send, self._on_done = open_group, send, on_done
        self._parts = part_count(size, part_size)
        self._turn = threading.Condition()
        self._sessions: dict[int, _Session] = {}
        self._stopped = False

    def interrupt(self) -> None:
        """Wake every part that waits for its turn, with an error: the transfer stopped."""
        with self._turn:
            self._stopped = True
            self._turn.notify_all()

    def last_of(self, group: int) -> int:
        return min(self._parts, (group + 1) * self.group) - 1

    def write(self, index: int, data: memoryview) -> None:
        """Send part ``index`` once the parts before it in its group are sent."""
        group = index // self.group
        session = self._wait_for_turn(group, index)
        try:
            if session.handle is None:
                session.handle = self._open(group)
            generation = self._send(
                session.handle, group, index, data, index == self.last_of(group)
            )
        except BaseException:
            with self._turn:
                session.failed = True  # the group's later parts cannot follow: they fail too
                self._turn.notify_all()
            raise
        with self._turn:
            session.next += 1
            if generation is not None:
                del self._sessions[group]
            self._turn.notify_all()
        if generation is not None:
            self._on_done(group, generation)

    def _wait_for_turn(self, group: int, index: int) -> _Session:
        first = group * self.group
        with self._turn:
            while True:
                if self._stopped:
                    raise DestinationError(
                        f"stopped before part {index + 1} could be sent", file=self.name
                    )
                session = self._sessions.get(group)
                if index == first and (session is None or session.failed):
                    session = self._sessions[group] = _Session(None, first)  # (again)
                if session is not None:
                    if session.failed:
                        raise DestinationError(
                            f"part {index + 1} cannot be sent: an earlier part of its group failed",
                            file=self.name,
                            hint="run again to resume from the last finished group",
                        )
                    if session.next == index:
                        return session
                    if session.next > index:
                        raise DestinationError(
                            f"part {index + 1} was sent twice in one upload", file=self.name
                        )
                self._turn.wait(WAIT_STEP)
