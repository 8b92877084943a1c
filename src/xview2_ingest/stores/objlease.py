"""One writer per remote destination: a lease object created only where absent.

Over any store that can write an object on a condition: ``PREFIX/.xview2/lock.json`` is
created only if no such object exists (S3 and Azure ``If-None-Match: *``, GCS
``ifGenerationMatch=0``), so of two runs that start together exactly one gets it; the
other is refused with a message naming the run that holds it (host, process, boot).  The
holder renews it every :data:`RENEW_EVERY` seconds on the condition that it is still the
version it wrote (ETag, GCS generation) and deletes it when it stops.  A lease left by a
run killed outright is taken over, again on its version, when it has expired, or at once
when its process of this machine is gone.

Each store supplies a :class:`LeaseObject`: the four conditional requests on its lease.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import DestinationError
from ..transfer.resume_state import InvalidState, parse

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
"""How long a lease holds without renewal: what a run killed elsewhere blocks others."""
RENEW_EVERY = 20.0


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` (in clock ticks since boot): tells a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lease_record(token: str) -> dict[str, Any]:
    """What a lease says of its holder (this process, machine and boot) and its expiry."""
    now = int(time.time())
    return {
        "token": token,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "proc_start": _started(os.getpid()),
        "boot": _boot_id(),
        "since": now,
        "expires": now + int(LEASE_SECONDS),
    }


def holder_text(record: dict[str, Any]) -> str:
    """``pid 123 on host``, for messages."""
    started = record.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(started)) if isinstance(started, int) else "?"
    return f"pid {record.get('pid')} on {record.get('host')}, since {when}"


def alive_here(record: dict[str, Any]) -> bool:
    """False when the record names a process of this machine (this boot) that is gone."""
    if record.get("host") != socket.gethostname() or record.get("boot") != _boot_id():
        return True  # another machine (or boot): only the expiry can tell
    pid = record.get("pid")
    if type(pid) is not int or pid <= 0:
        return True
    return _started(pid) is not None and _started(pid) == record.get("proc_start")


class LeaseTaken(Exception):
    """A condition refused the write: the lease exists, or is no longer our version."""


class LeaseObject(Protocol):
    """The conditional requests a store makes on its lease object."""

    def create(self, body: bytes) -> str:
        """Write ``body`` only if the object does not exist; its version, else
        :class:`LeaseTaken`."""
        ...

    def read(self) -> tuple[bytes | None, str | None]:
        """The object's bytes and version; ``(None, None)`` when there is none."""
        ...

    def replace(self, body: bytes, version: str) -> str:
        """Write ``body`` only over ``version``; the new version, else :class:`LeaseTaken`."""
        ...

    def delete(self, version: str) -> None:
        """Delete the object only if it is still ``version`` (else leave it)."""
        ...


class ObjectLease:
    """The lease on one destination; a context manager that holds it."""

    def __init__(
        self,
        obj: LeaseObject,
        where: str,
        errors: tuple[type[BaseException], ...],
        explain: Callable[[BaseException], DestinationError],
    ):
        """``errors`` are the store's failures (renewal logs them and goes on); ``explain``
        turns one into the error a refused acquisition raises (missing bucket, access)."""
        self._obj, self._where, self._errors, self._explain = obj, where, errors, explain
        self._version: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._token = uuid.uuid4().hex

    def _body(self) -> bytes:
        return json.dumps(lease_record(self._token)).encode()

    def _current(self) -> tuple[dict[str, Any], str | None]:
        data, version = self._obj.read()
        if data is None:
            return {}, None
        try:
            return parse(data) or {}, version
        except InvalidState:
            return {}, version  # unreadable: treated as expired

    def acquire(self) -> None:
        try:
            self._version = self._acquire()
        except self._errors as exc:
            raise self._explain(exc) from None
        self._renewer = threading.Thread(target=self._renew, name="xview2-lease", daemon=True)
        self._renewer.start()

    def _acquire(self) -> str:
        for _ in range(3):
            try:
                return self._obj.create(self._body())
            except LeaseTaken:
                pass
            record, version = self._current()
            if version is None:
                continue  # released meanwhile: try again
            if record.get("token") == self._token:
                return version  # our own create, retried after its answer was lost
            expires = record.get("expires")
            expired = not isinstance(expires, int | float) or expires < time.time()
            if not expired and alive_here(record):
                raise DestinationError(
                    f"another xview2 run ({holder_text(record)}) is writing to {self._where}",
                    hint="wait for it to finish or stop it, then run again; a lease left by a "
                    f"run killed on another machine expires within {int(LEASE_SECONDS)}s",
                )
            try:
                log.info("taking over the lease of a run that stopped (%s)", holder_text(record))
                return self._obj.replace(self._body(), version)
            except LeaseTaken:
                pass
        raise DestinationError(
            f"another xview2 run is taking the writer's lease of {self._where}",
            hint="wait for it to finish or stop it, then run again",
        )

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                self._version = self._obj.replace(self._body(), self._version or "")
            except LeaseTaken:
                log.error("the writer's lease of %s was taken by another run", self._where)
                return
            except self._errors as exc:
                log.warning("could not renew the writer's lease of %s: %s", self._where, exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._version is None:
            return
        try:
            self._obj.delete(self._version)
        except self._errors as exc:
            log.warning("could not release the writer's lease of %s: %s", self._where, exc)
        self._version = None

    def __enter__(self) -> ObjectLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
