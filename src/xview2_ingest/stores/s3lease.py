"""One writer per S3 destination: a lease object written with a conditional put.

``PREFIX/.xview2/lock.json`` is created with ``If-None-Match: *``, so of two runs that
start together exactly one gets it; the other is refused with a message naming the run
that holds it.  The lease says who holds it (host, process, boot) and until when; the
holder renews it every :data:`RENEW_EVERY` seconds with ``If-Match`` on its own ETag and
deletes it when it stops.  A run killed outright leaves it behind, so it is taken over
(again with ``If-Match``, so only one run can take it) when it has expired, or at once
when it was held by a process of this machine that no longer exists.

Servers without conditional writes answer ``501``/``NotImplemented``: the lease is then
written unconditionally, with a warning, which still stops a second run that starts
later but not one that starts in the same instant.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import DestinationError
from ..transfer.resume_state import InvalidState, parse

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0
"""How long a lease holds without renewal: what a run killed elsewhere blocks others."""
RENEW_EVERY = 20.0
_REFUSED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_UNSUPPORTED = ("NotImplemented", "501")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


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


class S3Lease:
    """The lease on one S3 destination; a context manager that holds it."""

    def __init__(self, client: Any, bucket: str, key: str, where: str):
        self._s3, self._bucket, self._key, self._where = client, bucket, key, where
        self._etag: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._token = uuid.uuid4().hex

    def _body(self) -> bytes:
        return json.dumps(lease_record(self._token)).encode()

    def _put(self, **condition: str) -> str:
        reply = self._s3.put_object(
            Bucket=self._bucket, Key=self._key, Body=self._body(), **condition
        )
        return str(reply["ETag"])

    def _current(self) -> tuple[dict[str, Any], str | None]:
        try:
            got = self._s3.get_object(Bucket=self._bucket, Key=self._key)
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return {}, None
            raise
        try:
            record = parse(got["Body"].read()) or {}
        except InvalidState:
            record = {}  # unreadable: treated as expired
        return record, got.get("ETag")

    def acquire(self) -> None:
        try:
            self._etag = self._acquire()
        except (ClientError, BotoCoreError) as exc:
            raise DestinationError(
                f"cannot take the writer's lease {self._key} in {self._where}: {exc}",
                hint="check the credentials and the bucket",
            ) from None
        self._renewer = threading.Thread(target=self._renew, name="xview2-lease", daemon=True)
        self._renewer.start()

    def _acquire(self) -> str:
        for _ in range(3):
            try:
                return self._put(IfNoneMatch="*")
            except ClientError as exc:
                if _code(exc) in _UNSUPPORTED:
                    log.warning("%s has no conditional writes; the lease is advisory", self._where)
                    return self._put()
                if _code(exc) not in _REFUSED:
                    raise
            record, etag = self._current()
            if etag is None:
                continue  # released meanwhile: try again
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
                return self._put(IfMatch=etag)
            except ClientError as exc:
                if _code(exc) not in _REFUSED:
                    raise
        raise DestinationError(
            f"another xview2 run is taking the writer's lease of {self._where}",
            hint="wait for it to finish or stop it, then run again",
        )

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                self._etag = self._put(IfMatch=self._etag or "*")
            except ClientError as exc:
                if _code(exc) in _REFUSED:
                    log.error("the writer's lease of %s was taken by another run", self._where)
                    return
                log.warning("could not renew the writer's lease of %s: %s", self._where, exc)
            except BotoCoreError as exc:
                log.warning("could not renew the writer's lease of %s: %s", self._where, exc)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        if self._etag is None:
            return
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
        except ClientError as exc:
            if _code(exc) in _UNSUPPORTED or _code(exc) == "InvalidArgument":
                record, _ = self._current()
                if record.get("token") == self._token:
                    self._s3.delete_object(Bucket=self._bucket, Key=self._key)
            elif _code(exc) not in (*_REFUSED, "NoSuchKey", "404"):
                log.warning("could not release the writer's lease of %s: %s", self._where, exc)
        except BotoCoreError as exc:
            log.warning("could not release the writer's lease of %s: %s", self._where, exc)
        self._etag = None

    def __enter__(self) -> S3Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
