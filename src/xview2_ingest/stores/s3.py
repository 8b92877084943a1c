"""S3 and S3-compatible object stores, through boto3.

Data streams straight into a multipart upload: part *i* of the plan is upload part *i+1*,
so parts finish in any order and nothing touches local disk.  The upload is completed
only after the engine verified the digest, and aborted on a mismatch.  S3's own
ListParts is the journal of finished parts; the engine's small resume state (upload id,
digest state) is kept beside it as ``PREFIX/.xview2/state/NAME.json``.  That object is
rewritten every ``REMOTE_STATE_INTERVAL`` seconds and when a run stops; in between, each
checkpoint goes to a local copy (:mod:`.statecopy`), so a part costs no extra request.

Every part carries its CRC32 (``x-amz-checksum-crc32``, in an upload created with
``ChecksumAlgorithm=CRC32``, as boto3's own transfers do), so the server checks each part
as it arrives and the object keeps a composite checksum (its cost: ``docs/benchmarks.md``).
A part is sent from its buffer in one call, without a copy (:func:`_body`).

Credentials come from the standard AWS chain; ``AWS_ENDPOINT_URL`` (or ``endpoint_url``)
selects an S3-compatible server, as in every AWS tool.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import zlib
from collections.abc import Iterator
from typing import IO, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ..errors import DestinationError
from ..transfer.resume_state import (
    InvalidState,
    RemoteRecord,
    parse,
    part_count,
    remote_record,
)
from .base import PendingUpload
from .objlease import ObjectLease
from .s3lease import S3LeaseObject
from .statecopy import LocalStateCopy, Spool

log = logging.getLogger(__name__)

MiB = 1 << 20
STATE_DIR = ".xview2/state"
CHECKSUM = "CRC32"
"""The per-part checksum of new uploads."""
REMOTE_STATE_INTERVAL = 5.0
"""Seconds between saves of resume state to the bucket while the local copy is usable."""


def _crc32(data: memoryview) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _error(exc: BaseException, name: str, action: str, where: str) -> DestinationError:
    if isinstance(exc, NoCredentialsError):
        return DestinationError(
            f"cannot {action} {where}: no AWS credentials found",
            file=name,
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            return DestinationError(
                f"cannot {action} {where}: the bucket does not exist",
                file=name,
                hint="create it first, or check the bucket name and AWS_ENDPOINT_URL",
            )
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            return DestinationError(
                f"cannot {action} {where}: access denied ({code})",
                file=name,
                hint="check the AWS credentials and the bucket policy; finished parts are kept",
            )
        return DestinationError(f"cannot {action} {where}: {code or exc}", file=name)
    return DestinationError(f"cannot {action} {where}: {exc}", file=name)


def _body(data: memoryview) -> bytes | bytearray:
    """A part as a request body that goes out in one ``sendall``.

    botocore refuses a memoryview body, and a file-like one is sent 16 KiB per Python
    loop, copied twice on the way (see ``docs/benchmarks.md``).  The engine's S3
    buffers are bytearrays the exact size of their part, which botocore accepts and
    urllib3 sends whole; any other view is copied once.
    """
    whole = data.obj
    if isinstance(whole, bytearray) and data.nbytes == len(whole):
        return whole
    return data.tobytes()


def _hashed(record: RemoteRecord | None) -> int:
    engine = record.engine if record else None
    hashed = engine.get("hashed") if isinstance(engine, dict) else None
    return hashed if type(hashed) is int else -1


MAX_KEY_BYTES = 1024
"""S3's limit on the length of an object key, in bytes of UTF-8."""


def _key_problem(name: str, key: str) -> str | None:
    """Why ``name`` (giving ``key``) would not stay under its prefix, or None."""
    if not name:
        return "the name is empty"
    if name.startswith("/"):
        return "the name is absolute"
    segments = key.removesuffix("/").split("/")  # "folder/" is a listing prefix
    if any(segment in ("", ".", "..") for segment in segments):
        return "a path segment is empty, '.' or '..'"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        return "it holds a control character"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"the key is longer than S3's {MAX_KEY_BYTES} bytes"
    return None


def parse_s3_url(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise DestinationError(f"{url!r} names no bucket", hint="use s3://bucket/prefix")
    return bucket, prefix.strip("/")


class S3Upload:
    def __init__(self, store: S3Store, name: str, size: int, part_size: int):
        self.name, self.size, self.part_size = name, size, part_size
        self._store, self._s3, self._bucket = store, store.client, store.bucket
        self._key = store.key_of(name)
        self._state_key = store.state_key(name)
        self._lock = threading.Lock()
        self._parts: dict[int, dict[str, str]] = {}  # index -> its CompleteMultipartUpload entry
        self._checksum: str | None = CHECKSUM
        self._engine_state: dict[str, Any] | None = None
        self._copy = store.local_copy(self._key)
        self._spool: Spool | None = None
        self._spooled: dict[int, int] = {}  # index -> bytes of it in the spool
        self._saved_at = 0.0  # when the bucket last got the state (monotonic)
        self._unsaved: dict[str, Any] | None = None  # newer state only the local copy has
        where = store.url
        try:
            self._upload_id = self._resume(self._checked(self._state_key, None))
            if self._upload_id is None:
                self.part_size, self._parts = part_size, {}
                self._checksum = CHECKSUM
                self._abort_strays()
                created = self._s3.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, ChecksumAlgorithm=CHECKSUM
                )
                self._upload_id = created["UploadId"]
                self._write_state(None)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "start an upload to", where) from None
        self._spool = self._copy.spool(self._upload_id, self.part_size)

    def _checked(self, key: str, local: dict[str, Any] | None) -> RemoteRecord | None:
        """The state record in ``key`` (or the local copy's ``local``), checked; None, with
        a warning naming where it was, when it cannot be trusted."""
        where = f"s3://{self._bucket}/{key}" if local is None else str(self._copy.path)
        try:
            raw = self._store._read_json(key) if local is None else local
            if raw is None:
                return None
            return remote_record(
                raw,
                key=self._key,
                size=self.size,
                min_part_size=self._store.min_part_size,
                max_parts=self._store.max_parts,
                checksums=(CHECKSUM, None),
            )
        except InvalidState as exc:
            log.warning("%s: ignoring the resume state %s: %s", self.name, where, exc)
            return None

    def _resume(self, state: RemoteRecord | None) -> str | None:
        if state is None:
            return None
        self.part_size = state.part_size  # a resumed upload keeps its part size
        self._checksum = state.checksum  # None: started without part checksums
        upload_id = state.upload_id
        try:
            paginator = self._s3.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self._bucket, Key=self._key, UploadId=upload_id):
                for part in page.get("Parts", []):
                    index = part["PartNumber"] - 1
                    if 0 <= index < self._nparts() and part["Size"] == self._part_len(index):
                        self._parts[index] = {"ETag": part["ETag"]} | (
                            {"ChecksumCRC32": part["ChecksumCRC32"]}
                            if part.get("ChecksumCRC32")
                            else {}
                        )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404"):
                self._parts = {}
                return None
            raise
        self._engine_state = state.engine
        local = self._checked(self._state_key, self._copy.read())
        if local and local.upload_id == upload_id and local.part_size == self.part_size:
            if _hashed(local) > _hashed(state):
                self._engine_state = local.engine  # this machine got further
            spool = self._copy.spool(upload_id, self.part_size)
            if local.spooled and spool.exists():
                self._spooled = dict(local.spooled)
        return upload_id

    def _nparts(self) -> int:
        return part_count(self.size, self.part_size)

    def _abort_strays(self) -> None:
        """Abort earlier uploads of this key that this tool's own resume state names (one
        whose resume was refused); another tool's uploads of the same key are left alone."""
        listing = self._s3.list_multipart_uploads(Bucket=self._bucket, Prefix=self._key)
        for upload in listing.get("Uploads", []):
            if upload["Key"] == self._key and self._store._state_names(self.name, upload):
                log.info("aborting an earlier upload of %s that cannot resume", self.name)
                self._s3.abort_multipart_upload(
                    Bucket=self._bucket, Key=self._key, UploadId=upload["UploadId"]
                )

    def _part_len(self, index: int) -> int:
        return min(self.part_size, self.size - index * self.part_size)

    def _record(self, engine: dict[str, Any] | None) -> dict[str, Any]:
        with self._lock:
            spooled = {str(i): n for i, n in self._spooled.items()}
        return {
            "upload_id": self._upload_id,
            "key": self._key,
            "size": self.size,
            "part_size": self.part_size,
            "checksum": self._checksum,
            "engine": engine,
            "spool": spooled,  # only meaningful on this machine; see _resume
        }

    def _write_state(self, engine: dict[str, Any] | None) -> None:
        record = self._record(engine)
        self._copy.write(record)
        self._save(record)

    def _save(self, record: dict[str, Any]) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=self._state_key, Body=json.dumps(record))
        self._saved_at, self._unsaved = time.monotonic(), None

    def done_parts(self) -> set[int]:
        with self._lock:
            return set(self._parts)

    def write_part(self, index: int, data: memoryview) -> None:
        extra = {"ChecksumCRC32": _crc32(data)} if self._checksum == CHECKSUM else {}
        try:
            reply = self._s3.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=index + 1,
                Body=_body(data),
                ContentLength=data.nbytes,
                **extra,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, self.name, f"upload part {index + 1} to", self._store.url) from None
        with self._lock:
            self._parts[index] = {"ETag": reply["ETag"]} | extra
            if self._spooled.get(index, 0) < data.nbytes:
                self._spooled.pop(index, None)  # a part's head is of no use once it is sent

    def read_part(self, index: int, into: memoryview) -> bool:
        """Parts of an unfinished multipart upload cannot be read back; bytes kept in this
        machine's spool can."""
        with self._lock:
            spooled = self._spooled.get(index, 0)
        return bool(spooled >= into.nbytes and self._spool and self._spool.read(index, into))

    def confirm_part(self, index: int, data: memoryview) -> bool:
        """Send the part again, always: its bytes cannot be read back to compare, and the
        CRC32 or ETag that ListParts gives could be matched by a source serving other bytes
        under the same name.  Only parts re-hashed after a stop or a crash come here (a
        few per resume), so this costs a few part uploads, not a second transfer."""
        self.write_part(index, data)
        return False

    def keep_partial(self, index: int, data: memoryview) -> int:
        """Keep the bytes in the local spool (S3 keeps only whole parts)."""
        if self._spool is None or not data.nbytes or not self._spool.write(index, data):
            return 0
        with self._lock:
            self._spooled[index] = max(self._spooled.get(index, 0), data.nbytes)
        return data.nbytes

    def kept_parts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._spooled)

    def load_state(self) -> dict[str, Any] | None:
        return self._engine_state

    def checkpoint(self, state: dict[str, Any]) -> None:
        record = self._record(state)
        recent = time.monotonic() - self._saved_at < REMOTE_STATE_INTERVAL
        if self._copy.write(record) and recent:
            self._unsaved = record
            return
        try:
            self._save(record)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, self.name, "save resume state to", self._store.url) from None

    def publish(self) -> None:
        with self._lock:
            parts = [{"PartNumber": i + 1} | entry for i, entry in sorted(self._parts.items())]
        if [p["PartNumber"] for p in parts] != list(range(1, self._nparts() + 1)):
            raise DestinationError(
                f"cannot complete the upload: {len(parts)} of {self._nparts()} parts are there",
                file=self.name,
                hint="run again to send the missing parts",
            )
        try:
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )
            self._s3.delete_object(Bucket=self._bucket, Key=self._state_key)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, self.name, "complete the upload to", self._store.url) from None
        self._copy.delete()
        self._drop_spool()

    def _drop_spool(self) -> None:
        if self._spool is not None:
            self._spool.delete()
        with self._lock:
            self._spooled.clear()

    def abort(self) -> None:
        try:
            self._s3.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )
            self._s3.delete_object(Bucket=self._bucket, Key=self._state_key)
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not abort the upload of %s: %s", self.name, exc)
        self._copy.delete()
        self._drop_spool()

    def close(self) -> None:
        """Leave the multipart upload open for a later run, its newest state saved."""
        if self._unsaved is None:
            return
        try:
            self._save(self._unsaved)
        except (ClientError, BotoCoreError) as exc:
            log.warning(
                "could not save the resume state of %s to %s (%s); a rerun on this machine"
                " resumes from its local copy",
                self.name,
                self._store.url,
                exc,
            )


class S3Store:
    min_part_size = 5 * MiB  # S3's own lower limit for all but the last part
    default_part_size = 8 * MiB
    """boto3's own default.  5 MiB parts lose less to a kill (4.0-4.6 % of a GiB over three
    kills at four connections, against 4.8-7.7 %: ``bench/crash_loss.py``) but cost about
    3-7 % of an unthrottled transfer in requests and in the server's completion
    (``bench/s3_part_size.py``; docs/benchmarks.md); ``--part-size-mb 5`` chooses them."""
    max_parts = 10_000
    # Hashed parts cannot be read back from an open multipart upload: checkpoint each one
    # (to the local copy; to the bucket every REMOTE_STATE_INTERVAL seconds).
    checkpoint_interval = 0.0
    page_aligned_buffers = False  # bytearrays, which go out in one send (see _body)

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        max_connections: int = 32,
        client: Any = None,
    ):
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        config = Config(
            max_pool_connections=max(10, max_connections),
            retries={"max_attempts": 5, "mode": "standard"},
            # No new-style checksum headers or aws-chunked bodies: many S3-compatible
            # servers refuse them, and they are a second pass over every byte.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Parts are sent as UNSIGNED-PAYLOAD: the buffer sent is the buffer checked
            # against the catalog's SHA-1, and TLS guards it on the way to S3, while
            # signing would SHA-256 every byte once more, in Python's read loop (a third of
            # the transfer's CPU: docs/benchmarks.md).
            s3={"payload_signing_enabled": False},
        )
        self.client = client or boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, config=config
        )

    def key_of(self, name: str) -> str:
        """The object key of ``name``, refused unless it stays under the prefix.

        S3 takes ``..`` literally, but tools that mirror a bucket to disk do not: a key
        ``prefix/../victim`` lands outside.  So no segment may be empty (but for a final
        ``/`` of a folder prefix), ``.`` or ``..``, the name may not start with ``/`` or
        hold control characters, and the whole key must fit S3's 1,024 bytes.
        """
        key = f"{self.prefix}/{name}" if self.prefix else name
        problem = _key_problem(name, key)
        if problem is not None:
            raise DestinationError(
                f"refusing the object name {name[:200]!r} in {self.url}: {problem}",
                file=name,
                hint="names must stay under the destination prefix",
            )
        return key

    def state_key(self, name: str) -> str:
        return self.key_of(f"{STATE_DIR}/{name}.json")

    def local_copy(self, key: str) -> LocalStateCopy:
        """The local copy of the resume state of the upload to ``key``."""
        return LocalStateCopy(f"{self.client.meta.endpoint_url}/{self.bucket}/{key}")

    def _read_json(self, key: str) -> dict[str, Any] | None:
        """The JSON object in ``key``; None when absent; :class:`InvalidState` when it
        cannot be a resume record (too large, not JSON, not an object)."""
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-1048576")
            body = reply["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "InvalidRange"):
                return None
            raise
        return parse(body)

    def exclusive(self) -> ObjectLease:
        """The writer's lease ``PREFIX/.xview2/lock.json`` (see :mod:`.objlease`)."""
        name = ".xview2/lock.json"
        key = f"{self.prefix}/{name}" if self.prefix else name
        return ObjectLease(
            S3LeaseObject(self.client, self.bucket, key, self.url),
            self.url,
            (ClientError, BotoCoreError),
            lambda exc: _error(exc, name, "take the writer's lease in", self.url),
        )

    def open_upload(self, name: str, size: int, part_size: int) -> S3Upload:
        return S3Upload(self, name, size, part_size)

    def size_of(self, name: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key_of(name))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise _error(exc, name, "read", self.url) from None
        except BotoCoreError as exc:
            raise _error(exc, name, "read", self.url) from None
        return int(head["ContentLength"])

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return bytes(
                self.client.get_object(Bucket=self.bucket, Key=self.key_of(name))["Body"].read()
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _error(exc, name, "read", self.url) from None
        except BotoCoreError as exc:
            raise _error(exc, name, "read", self.url) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key_of(name), Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "write", self.url) from None

    def open_read(self, name: str) -> IO[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key_of(name))["Body"]
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "read", self.url) from None
        return body  # type: ignore[no-any-return]

    def put_stream(self, name: str, stream: IO[bytes], size: int) -> None:
        try:
            if size <= 64 * MiB:
                data = stream.read(size)
                self.client.put_object(Bucket=self.bucket, Key=self.key_of(name), Body=data)
            else:
                self.client.upload_fileobj(stream, self.bucket, self.key_of(name))
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "write", self.url) from None

    def delete(self, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key_of(name))
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "delete", self.url) from None

    def list_files(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self.key_of(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base
            ):
                for obj in page.get("Contents", []):
                    rel = obj["Key"][strip:]
                    if not rel.startswith(".xview2/"):
                        yield rel, int(obj["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, prefix or "(listing)", "list", self.url) from None

    def _uploads(self) -> list[dict[str, Any]]:
        """Every unfinished multipart upload under the prefix, whoever started it."""
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=base
            )
            return [u for page in pages for u in page.get("Uploads", [])]
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, "(uploads)", "list uploads in", self.url) from None

    def _own_uploads(self, name: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(name, listing entry) of each unfinished upload this tool started here.

        An upload is ours when its key is the key of a name and that name's resume state
        (``.xview2/state/NAME.json`` in the bucket, or this machine's local copy) names
        its upload id.  Upload ids are unique, so another tool's upload under the same
        prefix, even of the same key, is never taken for ours.
        """
        strip = len(self.prefix) + 1 if self.prefix else 0
        own = []
        for upload in self._uploads():
            rel = upload["Key"][strip:]
            if (name is not None and rel != name) or rel.startswith(".xview2/"):
                continue
            if _key_problem(rel, upload["Key"]) is None and self._state_names(rel, upload):
                own.append((rel, upload))
        return own

    def _state_names(self, name: str, upload: dict[str, Any]) -> bool:
        """Whether this tool's resume state of ``name`` records ``upload``."""
        upload_id, key = upload["UploadId"], upload["Key"]
        try:
            state = self._read_json(self.state_key(name))
        except InvalidState:
            state = None  # a record that cannot be trusted proves nothing
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "read resume state in", self.url) from None
        if state and state.get("upload_id") == upload_id and state.get("key") == key:
            return True
        local = self.local_copy(key).read()
        return bool(local and local.get("upload_id") == upload_id and local.get("key") == key)

    def _pending(self, name: str, upload: dict[str, Any]) -> PendingUpload:
        try:
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            parts = [p for page in pages for p in page.get("Parts", [])]
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "list the parts of an upload in", self.url) from None
        return PendingUpload(
            name,
            upload.get("Initiated") and upload["Initiated"].isoformat(),
            len(parts),
            sum(p["Size"] for p in parts),
            f"multipart upload {upload['UploadId'][:12]}",
        )

    def pending_uploads(self) -> list[PendingUpload]:
        """This tool's unfinished uploads here (see :meth:`_own_uploads`)."""
        return [self._pending(rel, upload) for rel, upload in self._own_uploads()]

    def abort_pending(
        self, name: str | None = None, *, dry_run: bool = False
    ) -> list[PendingUpload]:
        """Abort this tool's unfinished uploads (all, or of ``name``) with their resume
        state; return them.  ``dry_run`` only lists them.  Uploads other tools started,
        under this prefix or beside it, are never touched."""
        done = []
        for rel, upload in self._own_uploads(name):
            pending = self._pending(rel, upload)
            if not dry_run:
                try:
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    self.client.delete_object(Bucket=self.bucket, Key=self.state_key(rel))
                except (ClientError, BotoCoreError) as exc:
                    raise _error(exc, rel, "abort the upload in", self.url) from None
                self.local_copy(upload["Key"]).delete()
                log.info("aborted the unfinished upload of %s in %s", rel, self.url)
            done.append(pending)
        return done

    def open_read_at(self, name: str, offset: int) -> IO[bytes]:
        """Like :meth:`open_read`, starting ``offset`` bytes into the object (ranged GET);
        at the very end of the object, an empty stream (S3 refuses that range)."""
        if offset == 0:
            return self.open_read(name)
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=self.key_of(name), Range=f"bytes={offset}-"
            )["Body"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "InvalidRange" and self.size_of(name) == offset:
                return io.BytesIO()
            raise _error(exc, name, "read", self.url) from None
        except BotoCoreError as exc:
            raise _error(exc, name, "read", self.url) from None
        return body  # type: ignore[no-any-return]

    def read_into(self, name: str, offset: int, into: memoryview) -> None:
        """Fill ``into`` with the bytes of ``name`` from ``offset``: one ranged GET read
        straight into the buffer, its connection back to the pool for the next range."""
        end = offset + into.nbytes - 1
        try:
            body = self.client.get_object(
                Bucket=self.bucket, Key=self.key_of(name), Range=f"bytes={offset}-{end}"
            )["Body"]
            try:
                view = into
                while view:
                    n = body.readinto(view)
                    if not n:
                        raise DestinationError(f"ends before byte {end + 1:,}", file=name)
                    view = view[n:]
                body.read()  # the end of the body: the connection goes back to the pool
            except BaseException:
                body.close()
                raise
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "read", self.url) from None

    def copy(self, source: str, target: str) -> None:
        """Publish ``source`` under ``target`` by a server-side copy (multipart above
        5 GiB, by boto3's managed copy): no byte passes through this process."""
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": self.key_of(source)},
                self.bucket,
                self.key_of(target),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, target, f"copy {source} in", self.url) from None

    def compose(
        self,
        name: str,
        sources: tuple[str, ...],
        *,
        workers: int = 8,
        max_part_size: int = 5 * 1024 * MiB,
        min_part_size: int = 5 * MiB,
    ) -> int:
        """Publish the concatenation of the objects ``sources`` as ``name``, server-side.

        A multipart upload whose parts are ``UploadPartCopy`` requests with a
        ``CopySourceRange``: no byte leaves the server.  Each source is cut into equal
        ranges of at most ``max_part_size`` (S3 allows 5 GiB per copied part); every range
        but the very last must be at least ``min_part_size`` (S3's 5 MiB), otherwise a
        :class:`DestinationError` is raised before anything is started.  Ranges are copied
        by ``workers`` threads; the upload is aborted on any failure.  Returns the size.
        """
        from concurrent.futures import ThreadPoolExecutor

        pieces: list[tuple[str, int, int]] = []
        for source in sources:
            size = self.size_of(source)
            if size is None:
                raise DestinationError(f"cannot assemble {name}: {source} is missing", file=name)
            count = max(1, -(-size // max_part_size))
            step = -(-size // count)
            pieces += [(source, a, min(a + step, size)) for a in range(0, size, step)]
        total = sum(end - start for _, start, end in pieces)
        small = [p for p in pieces[:-1] if p[2] - p[1] < min_part_size]
        if small:
            raise DestinationError(
                f"cannot assemble {name} server-side: {small[0][0]} is smaller than the "
                f"{min_part_size:,}-byte minimum of a copied part",
                file=name,
            )
        if len(pieces) > self.max_parts:
            raise DestinationError(f"cannot assemble {name}: too many parts", file=name)
        key = self.key_of(name)
        try:
            if not pieces:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=b"")
                return 0
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, name, "start assembling in", self.url) from None

        def copy(number: int, piece: tuple[str, int, int]) -> dict[str, Any]:
            source, start, end = piece
            reply = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": self.key_of(source)},
                CopySourceRange=f"bytes={start}-{end - 1}",
            )
            return {"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(max(1, min(workers, len(pieces)))) as pool:
                parts = list(pool.map(copy, range(1, len(pieces) + 1), pieces))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException as exc:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError) as abort_exc:
                log.warning("could not abort assembling %s: %s", name, abort_exc)
            if isinstance(exc, ClientError | BotoCoreError):
                raise _error(exc, name, "assemble in", self.url) from None
            raise
        size = self.size_of(name)
        if size != total:
            raise DestinationError(
                f"assembled object has {size} bytes, expected {total:,}", file=name
            )
        return total
