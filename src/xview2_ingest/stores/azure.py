"""Azure Blob Storage: ``az://container/prefix``, through azure-storage-blob.

A file is a block blob.  Part *i* of the plan is staged as block ``UPLOAD-00000i`` on the
final blob itself (Put Block, in any order and in parallel); staged blocks stay invisible,
and the blob's uncommitted block list is the journal of finished parts.  Only after the
engine verified the SHA-1 does :meth:`AzureUpload.publish` commit the block list: the
blob appears (or is replaced) atomically, and Azure drops every uncommitted block.

The engine's resume state is kept as for S3 (:class:`.statecopy.RemoteState`): after
every part in a local copy, every few seconds in ``PREFIX/.xview2/state/NAME.json``.

Credentials: ``AZURE_STORAGE_CONNECTION_STRING``; else the account (from the URL or
``AZURE_STORAGE_ACCOUNT``) with ``AZURE_STORAGE_KEY``; else ``DefaultAzureCredential``
where azure-identity is installed.  The SDK retries rate limits (429, 503) and passing
server errors with exponential backoff.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from ..errors import DestinationError, UsageError
from .base import PendingUpload, UnreadableParts
from .objlease import LeaseTaken, ObjectLease
from .statecopy import LocalStateCopy, RemoteState

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )
    from azure.storage.blob import (
        BlobBlock,
        BlobSasPermissions,
        BlobServiceClient,
        generate_blob_sas,
    )

    HAVE_SDK = True
except ImportError:  # the optional extra is missing: AzureStore says what to install
    HAVE_SDK = False

log = logging.getLogger(__name__)

MiB = 1 << 20
WORK = ".xview2"
MAX_BLOCK = 4000 * MiB
"""Largest block Azure takes (Put Block, service version 2019-12-12 and later)."""
COPY_PIECE = 256 * MiB
"""Bytes per Put Block From URL when assembling server-side."""
LOCAL_PIECE = 8 * MiB
"""Bytes per block when assembling through this process (where the service cannot copy)."""
RETRY = {"retry_total": 8, "initial_backoff": 1, "increment_base": 2}


def parse_azure_url(url: str) -> tuple[str | None, str, str]:
    """(account or None, container, prefix) of any of the spellings ``open_store`` takes."""
    match = re.match(r"abfss?://([^@/]+)@([^./]+)\.dfs\.core\.windows\.net/?(.*)$", url)
    if match:
        return match.group(2), match.group(1), match.group(3).strip("/")
    match = re.match(r"https://([^./]+)\.blob\.core\.windows\.net/([^/]+)/?(.*)$", url)
    if match:
        return match.group(1), match.group(2), match.group(3).strip("/")
    if url.startswith("az://"):
        container, _, prefix = url[len("az://") :].partition("/")
        if container:
            return None, container, prefix.strip("/")
    raise DestinationError(f"{url!r} names no container", hint="use az://container/prefix")


def _error(exc: BaseException, name: str, action: str, where: str) -> DestinationError:
    if isinstance(exc, ClientAuthenticationError):
        return DestinationError(
            f"cannot {action} {where}: access denied",
            file=name,
            hint="check AZURE_STORAGE_CONNECTION_STRING (or the account key, or `az login`);"
            " finished parts are kept",
        )
    code = getattr(exc, "error_code", None) or ""
    if code == "ContainerNotFound":
        return DestinationError(
            f"cannot {action} {where}: the container does not exist",
            file=name,
            hint="create it first (`az storage container create -n NAME`), or check its name",
        )
    return DestinationError(f"cannot {action} {where}: {code or exc}", file=name)


def _service(account: str | None, endpoint_url: str | None, max_connections: int) -> Any:
    """A BlobServiceClient from the first credentials found (see the module's doc)."""
    import requests

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max_connections)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    options: dict[str, Any] = {"session": session, "max_single_put_size": 64 * MiB, **RETRY}
    connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        return BlobServiceClient.from_connection_string(connection, **options)
    account = account or os.environ.get("AZURE_STORAGE_ACCOUNT")
    if not account and not endpoint_url:
        raise DestinationError(
            "no Azure storage account given",
            hint="set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT (with"
            " AZURE_STORAGE_KEY, or signed in for DefaultAzureCredential)",
        )
    url = endpoint_url or f"https://{account}.blob.core.windows.net"
    key = os.environ.get("AZURE_STORAGE_KEY")
    if key:
        credential: Any = {"account_name": account, "account_key": key}
    else:
        try:
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise DestinationError(
                f"no credentials for the storage account {account}",
                hint="set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_KEY, or"
                " pip install azure-identity and sign in (`az login`)",
            ) from None
        credential = DefaultAzureCredential()
    return BlobServiceClient(url, credential=credential, **options)


class _LeaseObject:
    """The writer's lease as a block blob, on ETag conditions (``If-None-Match: *`` to
    create, ``If-Match`` to renew, take over or delete)."""

    def __init__(self, blob: Any):
        self._blob = blob

    def create(self, body: bytes) -> str:
        try:
            return str(self._blob.upload_blob(body, overwrite=True, if_none_match="*")["etag"])
        except (ResourceExistsError, ResourceModifiedError):
            raise LeaseTaken from None

    def replace(self, body: bytes, version: str) -> str:
        try:
            reply = self._blob.upload_blob(
                body, overwrite=True, etag=version, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise LeaseTaken from None
        return str(reply["etag"])

    def read(self) -> tuple[bytes | None, str | None]:
        try:
            downloader = self._blob.download_blob()
        except ResourceNotFoundError:
            return None, None
        return bytes(downloader.readall()), str(downloader.properties.etag)

    def delete(self, version: str) -> None:
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            self._blob.delete_blob(etag=version, match_condition=MatchConditions.IfNotModified)


class AzureUpload(UnreadableParts):
    """One file as staged blocks of its own blob, committed by :meth:`publish`."""

    def __init__(self, store: AzureStore, name: str, size: int, part_size: int):
        if part_size > MAX_BLOCK:
            raise DestinationError(
                f"a part of {part_size:,} bytes is larger than Azure's {MAX_BLOCK:,}-byte block",
                file=name,
                hint="use a smaller --part-size-mb",
            )
        self.name, self.size, self.part_size = name, size, part_size
        self._store = store
        self._blob = store.blob(name)
        self._lock = threading.Lock()
        self._done: set[int] = set()
        self._engine_state: dict[str, Any] | None = None
        self._state = RemoteState(
            store.where(name), lambda record: store.put_json(store.state_name(name), record)
        )
        try:
            remote = store.get_json(store.state_name(name))
            self._upload_id = self._resume(remote) if remote else None
            if self._upload_id is None:
                self.part_size, self._done = part_size, set()
                self._upload_id = uuid.uuid4().hex[:12]
                self._drop_blocks()
                self._state.save(self._record(None))
        except AzureError as exc:
            raise _error(exc, name, "start an upload to", store.url) from None

    def _resume(self, remote: dict[str, Any]) -> str | None:
        earlier = remote.get("part_size")
        upload_id = remote.get("upload_id")
        if remote.get("size") != self.size or not isinstance(earlier, int) or earlier < 1:
            return None
        if not isinstance(upload_id, str) or self.size > earlier * self._store.max_parts:
            return None
        self.part_size = earlier  # a resumed upload keeps its part size
        for block in self._uncommitted():
            owner, _, index = block.id.partition("-")
            if owner == upload_id and index.isdigit() and block.size == self._part_len(int(index)):
                self._done.add(int(index))
        self._engine_state = self._state.newest_engine_state(remote)
        return upload_id

    def _uncommitted(self) -> list[Any]:
        try:
            return list(self._blob.get_block_list("uncommitted")[1])
        except ResourceNotFoundError:
            return []

    def _drop_blocks(self) -> None:
        """Discard staged blocks of an earlier upload: a blob that has nothing but staged
        blocks is deleted; a published one keeps them until it is next committed."""
        if not self._uncommitted():
            return
        try:
            if self._store.size_of(self.name) is None:
                self._blob.delete_blob()
        except ResourceNotFoundError:
            pass

    def _part_len(self, index: int) -> int:
        return min(self.part_size, self.size - index * self.part_size)

    def _block_id(self, index: int) -> str:
        return f"{self._upload_id}-{index:06d}"  # one length for every block of the blob

    def _record(self, engine: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "upload_id": self._upload_id,
            "blob": self._blob.blob_name,
            "size": self.size,
            "part_size": self.part_size,
            "engine": engine,
        }

    def done_parts(self) -> set[int]:
        with self._lock:
            return set(self._done)

    def write_part(self, index: int, data: memoryview) -> None:
        try:
            self._blob.stage_block(self._block_id(index), data, length=data.nbytes)
        except AzureError as exc:
            raise _error(exc, self.name, f"stage part {index + 1} in", self._store.url) from None
        with self._lock:
            self._done.add(index)

    def load_state(self) -> dict[str, Any] | None:
        return self._engine_state

    def checkpoint(self, state: dict[str, Any]) -> None:
        try:
            self._state.checkpoint(self._record(state))
        except AzureError as exc:
            raise _error(exc, self.name, "save resume state to", self._store.url) from None

    def publish(self) -> None:
        count = -(-self.size // self.part_size) if self.size else 0
        missing = sorted(set(range(count)) - self.done_parts())
        if missing:
            raise DestinationError(
                f"cannot publish: part {missing[0] + 1} of {count} is not at {self._store.url}",
                file=self.name,
                hint="run again to fetch it",
            )
        blocks = [BlobBlock(self._block_id(i)) for i in range(count)]
        try:
            self._blob.commit_block_list(blocks)
            size = self._store.size_of(self.name)
            if size != self.size:
                raise DestinationError(
                    f"the committed blob has {size} bytes, expected {self.size:,}", file=self.name
                )
            self._store.delete_blob(self._store.state_name(self.name))
        except AzureError as exc:
            raise _error(exc, self.name, "commit the upload in", self._store.url) from None
        self._state.forget()

    def abort(self) -> None:
        try:
            self._store.delete_blob(self._store.state_name(self.name))
            self._drop_blocks()
        except AzureError as exc:
            log.warning("could not abort the upload of %s: %s", self.name, exc)
        self._state.forget()

    def close(self) -> None:
        """Leave the staged blocks for a later run, the newest state saved."""
        try:
            self._state.flush()
        except AzureError as exc:
            log.warning(
                "could not save the resume state of %s to %s (%s); a rerun on this machine"
                " resumes from its local copy",
                self.name,
                self._store.url,
                exc,
            )


class _BlobReader(io.RawIOBase):
    """A forward-only stream over the SDK's chunked download of a blob."""

    def __init__(self, downloader: Any):
        super().__init__()
        self._chunks = downloader.chunks()
        self._left = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = memoryview(chunk)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


class AzureStore:
    min_part_size = 1 * MiB  # Azure takes blocks of any size; small parts cost requests
    default_part_size = 16 * MiB
    max_parts = 50_000  # committed blocks per blob
    checkpoint_interval = 0.0  # parts are not read back: checkpoint each (locally)
    page_aligned_buffers = False

    def __init__(self, url: str, *, endpoint_url: str | None = None, max_connections: int = 32):
        if not HAVE_SDK:
            raise UsageError(
                f"{url} needs the Azure Blob Storage client, which is not installed",
                hint="pip install 'xview2-ingest[azure]'",
            )
        account, self.container, self.prefix = parse_azure_url(url)
        self.url = f"az://{self.container}/{self.prefix}".rstrip("/")
        self.service = _service(account, endpoint_url, max(10, max_connections))
        self.client = self.service.get_container_client(self.container)

    # -- names and small requests ------------------------------------------------------
    def key_of(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def state_name(self, name: str) -> str:
        return f"{WORK}/state/{name}.json"

    def where(self, name: str) -> str:
        """What the local copy of ``name``'s resume state is named after."""
        return f"{self.service.url.rstrip('/')}/{self.container}/{self.key_of(name)}"

    def blob(self, name: str) -> Any:
        return self.client.get_blob_client(self.key_of(name))

    def _rel(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def get_json(self, name: str) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.blob(name).download_blob().readall())
        except ResourceNotFoundError:
            return None
        except ValueError:
            return None
        return loaded if isinstance(loaded, dict) else None

    def put_json(self, name: str, record: dict[str, Any]) -> None:
        self.blob(name).upload_blob(json.dumps(record).encode(), overwrite=True)

    def delete_blob(self, name: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.blob(name).delete_blob()

    # -- the Store protocol ------------------------------------------------------------
    def open_upload(self, name: str, size: int, part_size: int) -> AzureUpload:
        return AzureUpload(self, name, size, part_size)

    def size_of(self, name: str) -> int | None:
        try:
            return int(self.blob(name).get_blob_properties().size)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", "") == "ContainerNotFound":
                raise _error(exc, name, "read", self.url) from None
            return None
        except AzureError as exc:
            raise _error(exc, name, "read", self.url) from None

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return bytes(self.blob(name).download_blob().readall())
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", "") == "ContainerNotFound":
                raise _error(exc, name, "read", self.url) from None
            return None
        except AzureError as exc:
            raise _error(exc, name, "read", self.url) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        try:
            self.blob(name).upload_blob(data, overwrite=True)
        except AzureError as exc:
            raise _error(exc, name, "write", self.url) from None

    def open_read(self, name: str) -> IO[bytes]:
        return self.open_read_at(name, 0)

    def open_read_at(self, name: str, offset: int) -> IO[bytes]:
        """A stream of ``name`` from ``offset`` on (ranged GETs of 4 MiB, each retried)."""
        try:
            downloader = self.blob(name).download_blob(offset=offset or None, max_concurrency=1)
        except AzureError as exc:
            raise _error(exc, name, "read", self.url) from None
        return io.BufferedReader(_BlobReader(downloader), 1 * MiB)

    def put_stream(self, name: str, stream: IO[bytes], size: int) -> None:
        try:  # one Put Blob up to 64 MiB, else staged blocks and one commit: atomic
            self.blob(name).upload_blob(stream, length=size, overwrite=True, max_concurrency=4)
        except AzureError as exc:
            raise _error(exc, name, "write", self.url) from None

    def delete(self, name: str) -> None:
        try:
            self.delete_blob(name)
        except AzureError as exc:
            raise _error(exc, name, "delete", self.url) from None

    def list_files(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self.key_of(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        try:
            for item in self.client.list_blobs(name_starts_with=base):
                rel = self._rel(item.name)
                if not rel.startswith(f"{WORK}/"):
                    yield rel, int(item.size)
        except AzureError as exc:
            raise _error(exc, prefix or "(listing)", "list", self.url) from None

    def _states(self) -> list[Any]:
        try:
            return list(self.client.list_blobs(name_starts_with=self.key_of(f"{WORK}/state/")))
        except AzureError as exc:
            raise _error(exc, "(uploads)", "list uploads in", self.url) from None

    def _name_of_state(self, key: str) -> str:
        return self._rel(key)[len(f"{WORK}/state/") : -len(".json")]

    def pending_uploads(self) -> list[PendingUpload]:
        out = []
        for item in self._states():
            if not item.name.endswith(".json"):
                continue
            name = self._name_of_state(item.name)
            record = self.get_json(self._rel(item.name)) or {}
            owner = f"{record.get('upload_id')}-"
            try:
                blocks = [
                    b
                    for b in self.blob(name).get_block_list("uncommitted")[1]
                    if b.id.startswith(owner)
                ]
            except ResourceNotFoundError:
                blocks = []
            started = item.creation_time
            out.append(
                PendingUpload(
                    name,
                    started.isoformat() if started else None,
                    len(blocks),
                    sum(int(b.size) for b in blocks),
                    "uncommitted blocks",
                )
            )
        return out

    def abort_pending(
        self, name: str | None = None, *, dry_run: bool = False
    ) -> list[PendingUpload]:
        """Drop this tool's staged blocks and resume state (all, or of ``name``); return
        what was discarded.  ``dry_run`` only lists it."""
        pending = [p for p in self.pending_uploads() if name is None or p.name == name]
        if not dry_run:
            self._discard({p.name for p in pending})
        return pending

    def _discard(self, names: set[str]) -> int:
        count = 0
        for item in self._states():
            found = self._name_of_state(item.name)
            if not item.name.endswith(".json") or found not in names:
                continue
            record = self.get_json(self._rel(item.name)) or {}
            size, part = record.get("size"), record.get("part_size")
            if isinstance(size, int) and isinstance(part, int) and part > 0:
                AzureUpload(self, found, size, part).abort()
            else:
                self.delete_blob(self._rel(item.name))
            LocalStateCopy(self.where(found)).delete()
            count += 1
        return count

    # -- capabilities ------------------------------------------------------------------
    def exclusive(self) -> ObjectLease:
        """The writer's lease ``PREFIX/.xview2/lock.json`` (see :mod:`.objlease`)."""
        name = f"{WORK}/lock.json"
        return ObjectLease(
            _LeaseObject(self.blob(name)),
            self.url,
            (AzureError,),
            lambda exc: _error(exc, name, "take the writer's lease in", self.url),
        )

    def copy(self, source: str, target: str) -> None:
        """Publish ``source`` under ``target``: blocks copied server-side, one commit."""
        self.compose(target, (source,))

    def compose(self, name: str, sources: tuple[str, ...], *, workers: int = 8) -> int:
        """Publish the concatenation of the blobs ``sources`` as ``name``; return its size.

        Each source is staged in ranges of :data:`COPY_PIECE` by Put Block From URL (no
        byte passes through this process), then one commit publishes the blob atomically.
        Where the service does not offer Put Block From URL (an emulator), the ranges are
        read and staged through this process instead, with the same single commit.
        """
        sizes: list[tuple[str, int]] = []
        for source in sources:
            size = self.size_of(source)
            if size is None:
                raise DestinationError(f"cannot assemble {name}: {source} is missing", file=name)
            sizes.append((source, size))
        total = sum(n for _, n in sizes)
        target = self.blob(name)
        try:
            try:
                self._assemble(target, sizes, COPY_PIECE, self._stage_from_url, workers)
            except HttpResponseError as exc:
                if getattr(exc, "error_code", "") not in ("APINotImplemented", "NotImplemented"):
                    raise
                log.info("Put Block From URL is not offered here: assembling %s locally", name)
                self._assemble(target, sizes, LOCAL_PIECE, self._stage_through_here, workers)
        except AzureError as exc:
            raise _error(exc, name, "assemble in", self.url) from None
        size = self.size_of(name)
        if size != total:
            raise DestinationError(
                f"assembled blob has {size} bytes, expected {total:,}", file=name
            )
        return total

    def _assemble(
        self,
        target: Any,
        sizes: list[tuple[str, int]],
        piece: int,
        stage: Any,
        workers: int,
    ) -> None:
        """Stage every source in ranges of ``piece`` bytes by ``stage``, then commit."""
        pieces = [(s, a, min(piece, n - a)) for s, n in sizes for a in range(0, n, piece)]
        if len(pieces) > self.max_parts:
            raise DestinationError(f"cannot assemble {target.blob_name}: too many blocks")
        token = uuid.uuid4().hex[:12]
        ids = [f"{token}-{i:06d}" for i in range(len(pieces))]
        if pieces:
            stage(target, ids[0], *pieces[0])  # alone first: it tells whether stage works
        with ThreadPoolExecutor(max(1, min(workers, len(pieces)))) as pool:
            futures = [
                pool.submit(stage, target, i, source, at, n)
                for i, (source, at, n) in zip(ids[1:], pieces[1:], strict=True)
            ]
            for future in futures:
                future.result()
        target.commit_block_list([BlobBlock(i) for i in ids])

    def _source_url(self, source: str) -> tuple[str, dict[str, Any]]:
        """A URL the service can read ``source`` from, and the request's extra arguments."""
        blob = self.blob(source)
        credential = self.service.credential
        key = getattr(credential, "account_key", None)
        if key:
            sas = generate_blob_sas(
                self.service.account_name,
                self.container,
                blob.blob_name,
                account_key=key,
                permission=BlobSasPermissions(read=True),
                expiry=datetime.now(UTC) + timedelta(hours=6),
            )
            return f"{blob.url}?{sas}", {}
        if hasattr(credential, "get_token"):
            token = credential.get_token("https://storage.azure.com/.default").token
            return blob.url, {"source_authorization": f"Bearer {token}"}
        return blob.url, {}  # a SAS credential is already part of the URL

    def _stage_from_url(self, target: Any, block_id: str, source: str, at: int, n: int) -> None:
        url, extra = self._source_url(source)
        target.stage_block_from_url(block_id, url, source_offset=at, source_length=n, **extra)

    def _stage_through_here(self, target: Any, block_id: str, source: str, at: int, n: int) -> None:
        data = self.blob(source).download_blob(offset=at, length=n, max_concurrency=1).readall()
        target.stage_block(block_id, data, length=n)
