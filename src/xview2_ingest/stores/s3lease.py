"""One writer per S3 destination: the lease of :mod:`.objlease` over S3's conditional
puts (``If-None-Match: *`` to create, ``If-Match`` on the ETag to renew, take over and
delete).

Servers without conditional writes answer ``501``/``NotImplemented``: the lease is then
written unconditionally, with a warning, which still stops a second run that starts
later but not one that starts in the same instant.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from .objlease import LeaseTaken

log = logging.getLogger(__name__)

_REFUSED = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_UNSUPPORTED = ("NotImplemented", "501")
_ABSENT = ("NoSuchKey", "404")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3LeaseObject:
    """The lease object's conditional requests on S3 (:class:`.objlease.LeaseObject`)."""

    def __init__(self, client: Any, bucket: str, key: str, where: str):
        self._s3, self._bucket, self._key, self._where = client, bucket, key, where

    def _put(self, body: bytes, **condition: str) -> str:
        try:
            reply = self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=body, **condition)
        except ClientError as exc:
            if _code(exc) in _REFUSED:
                raise LeaseTaken from None
            if _code(exc) not in _UNSUPPORTED:
                raise
            log.warning("%s has no conditional writes; the lease is advisory", self._where)
            reply = self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=body)
        return str(reply["ETag"])

    def create(self, body: bytes) -> str:
        return self._put(body, IfNoneMatch="*")

    def replace(self, body: bytes, version: str) -> str:
        return self._put(body, IfMatch=version or "*")

    def read(self) -> tuple[bytes | None, str | None]:
        try:
            got = self._s3.get_object(Bucket=self._bucket, Key=self._key)
        except ClientError as exc:
            if _code(exc) in _ABSENT:
                return None, None
            raise
        return got["Body"].read(), got.get("ETag")

    def delete(self, version: str) -> None:
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=version)
        except ClientError as exc:
            if _code(exc) in _UNSUPPORTED or _code(exc) == "InvalidArgument":
                if self.read()[1] == version:  # still ours: delete it plainly
                    self._s3.delete_object(Bucket=self._bucket, Key=self._key)
            elif _code(exc) not in (*_REFUSED, *_ABSENT):
                raise
