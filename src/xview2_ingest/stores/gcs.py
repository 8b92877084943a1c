"""Google Cloud Storage: ``gs://bucket/prefix``, through google-cloud-storage.

GCS has no multipart upload in its JSON API, so a file goes up as *part objects* in the
prefix's hidden area, ``PREFIX/.xview2/parts/NAME/UPLOAD/00042``, in parallel; listing
them is the journal of finished ones (each listed with the size, CRC32C and MD5 the
server computed).  Only after the engine verified the SHA-1 does
:meth:`GCSUpload.publish` join them with ``compose`` into the final name, atomically,
each source pinned to the generation that was written; the part objects are deleted
afterwards.

One compose call takes at most 32 sources, and a file of more part objects is composed
in rounds through intermediate objects, which a server that copies the bytes it composes
(fake-gcs-server) pays for with most of the file copied once more.  So a file of more
than 32 parts sends *groups* of consecutive parts as one object each (at most 32 of
them): a resumable upload per group, one request (chunk) per part, in order
(:class:`~.groups.GroupWriter`, :class:`~.base.GroupedParts`).  A file of at most 32
parts sends each part in one request (``uploadType=media``, the buffer as the body).

The engine's resume state is kept as for S3 (:class:`.statecopy.RemoteState`): after
every part in a local copy, every few seconds in ``PREFIX/.xview2/state/NAME.json``.

Credentials are found as Google's tools find them (Application Default Credentials);
``STORAGE_EMULATOR_HOST`` selects an emulator, as google-cloud-storage itself honours it.
Requests are retried on rate limits and passing server errors (:mod:`.gcsrequests`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any
from urllib.parse import quote, unquote

from ..errors import DestinationError, UsageError
from ..transfer.resume_state import part_count
from .base import PendingUpload, UnreadableParts
from .groups import GroupWriter
from .objlease import LeaseTaken, ObjectLease
from .statecopy import LocalStateCopy, RemoteState

try:
    import google.auth
    import requests
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import storage

    from .gcsrequests import (
        CHUNK_ALIGN,
        Retryable,
        checked,
        put_chunk,
        retrying,
        start_resumable,
    )

    HAVE_SDK = True
except ImportError:  # the optional extra is missing: GCSStore says what to install
    HAVE_SDK = False

log = logging.getLogger(__name__)

MiB = 1 << 20
WORK = ".xview2"
COMPOSE_MAX = 32
"""Sources one compose call takes (GCS's limit)."""


def group_parts_for(size: int, part_size: int) -> int:
    """Parts per part object: as few as keep a file within one compose call (1 for a
    file of at most 32 parts, or parts that a resumable upload cannot take as chunks)."""
    if part_size % CHUNK_ALIGN:
        return 1
    return max(1, -(-part_count(size, part_size) // COMPOSE_MAX))


def parse_gcs_url(url: str) -> tuple[str, str]:
    rest = url[len("gs://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise DestinationError(f"{url!r} names no bucket", hint="use gs://bucket/prefix")
    return bucket, prefix.strip("/")


def _error(exc: BaseException, name: str, action: str, where: str) -> DestinationError:
    if HAVE_SDK and isinstance(exc, DefaultCredentialsError):
        return DestinationError(
            f"cannot {action} {where}: no Google credentials found",
            file=name,
            hint="run `gcloud auth application-default login` or set"
            " GOOGLE_APPLICATION_CREDENTIALS to a service-account key file",
        )
    code = getattr(exc, "code", None) or getattr(getattr(exc, "response", None), "status_code", 0)
    if code == 404:
        return DestinationError(
            f"cannot {action} {where}: the bucket (or object) does not exist",
            file=name,
            hint="create the bucket first, or check its name and STORAGE_EMULATOR_HOST",
        )
    if code in (401, 403):
        return DestinationError(
            f"cannot {action} {where}: access denied ({code})",
            file=name,
            hint="check the Google credentials and the bucket's permissions;"
            " finished parts are kept",
        )
    return DestinationError(f"cannot {action} {where}: {exc}", file=name)


class _LeaseObject:
    """The writer's lease as a GCS object, on generation preconditions.  Written by the
    SDK's multipart upload: fake-gcs-server honours ``ifGenerationMatch`` there (not on
    ``uploadType=media``, nor on deletes)."""

    def __init__(self, bucket: Any, key: str, retry: Any):
        self._bucket, self._key, self._retry = bucket, key, retry

    def create(self, body: bytes) -> str:
        return self._write(body, 0)

    def replace(self, body: bytes, version: str) -> str:
        return self._write(body, int(version or 0))

    def _write(self, body: bytes, generation: int) -> str:
        blob = self._bucket.blob(self._key)
        try:
            blob.upload_from_string(
                body, content_type="application/json", if_generation_match=generation
            )
        except gexc.PreconditionFailed:
            raise LeaseTaken from None
        return str(blob.generation)

    def read(self) -> tuple[bytes | None, str | None]:
        blob = self._bucket.get_blob(self._key, retry=self._retry)
        if blob is None:
            return None, None
        try:
            data = blob.download_as_bytes(if_generation_match=blob.generation)
        except (gexc.NotFound, gexc.PreconditionFailed):
            return None, None  # replaced or deleted meanwhile: the caller tries again
        return data, str(blob.generation)

    def delete(self, version: str) -> None:
        with contextlib.suppress(gexc.NotFound, gexc.PreconditionFailed):
            self._bucket.blob(self._key).delete(if_generation_match=int(version))


class GCSUpload(UnreadableParts):
    """One file as part objects, composed into its final name by :meth:`publish`; each
    object holds ``group_parts`` consecutive parts (see the module's notes)."""

    def __init__(self, store: GCSStore, name: str, size: int, part_size: int):
        self.name, self.size, self.part_size = name, size, part_size
        self.group_parts = group_parts_for(size, part_size)
        self._store = store
        self._key = store.key_of(name)
        self._lock = threading.Lock()
        self._parts: dict[int, int] = {}  # group -> generation of its part object
        self._engine_state: dict[str, Any] | None = None
        self._state = RemoteState(
            f"{store.endpoint}/{store.bucket}/{self._key}",
            lambda record: store.put_json(store.state_key(name), record),
        )
        try:
            remote = store.get_json(store.state_key(name))
            self._upload_id = self._resume(remote) if remote else None
            if self._upload_id is None:
                self.part_size, self._parts = part_size, {}
                self.group_parts = group_parts_for(size, part_size)
                self._upload_id = uuid.uuid4().hex[:16]
                store.delete_keys(store.list_keys(store.parts_root(name)))  # strays
                self._state.save(self._record(None))
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, name, "start an upload to", store.url) from None
        self._groups = GroupWriter(
            name,
            size,
            self.part_size,
            self.group_parts,
            lambda group: start_resumable(
                store.session,
                store.endpoint,
                store.bucket,
                self._part_key(group),
                self._group_len(group),
            ),
            self._send,
            self._group_done,
        )

    @property
    def _root(self) -> str:
        return f"{self._store.parts_root(self.name)}{self._upload_id}/"

    def _resume(self, remote: dict[str, Any]) -> str | None:
        earlier = remote.get("part_size")
        upload_id = remote.get("upload_id")
        if remote.get("size") != self.size or not isinstance(earlier, int) or earlier < 1:
            return None
        if not isinstance(upload_id, str) or self.size > earlier * self._store.max_parts:
            return None
        group = remote.get("group_parts", 1)  # (uploads begun before groups: one part each)
        if type(group) is not int or not 1 <= group <= self._store.max_parts:
            return None
        if group > 1 and earlier % CHUNK_ALIGN:
            return None
        self.part_size, self.group_parts = earlier, group  # a resumed upload keeps its own
        root = f"{self._store.parts_root(self.name)}{upload_id}/"
        for blob in self._store.client.list_blobs(self._store.bucket, prefix=root):
            leaf = blob.name[len(root) :]
            if leaf.isdigit() and blob.size == self._group_len(int(leaf)):
                self._parts[int(leaf)] = int(blob.generation)
        state = self._state.newest_engine_state(remote)
        hashed = state.get("hashed") if state else None
        if isinstance(hashed, int) and hashed % group:  # (never written so: groups wait
            state = None  # for their first part, which a resume from here would not send)
        self._engine_state = state
        return upload_id

    def _group_len(self, group: int) -> int:
        start = group * self.group_parts * self.part_size
        return max(0, min(self.group_parts * self.part_size, self.size - start))

    def _groups_total(self) -> int:
        return -(-part_count(self.size, self.part_size) // self.group_parts)

    def _record(self, engine: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "upload_id": self._upload_id,
            "key": self._key,
            "size": self.size,
            "part_size": self.part_size,
            "group_parts": self.group_parts,
            "engine": engine,
        }

    def done_parts(self) -> set[int]:
        parts = part_count(self.size, self.part_size)
        with self._lock:
            groups = set(self._parts)
        k = self.group_parts
        return {i for g in groups for i in range(g * k, min(parts, (g + 1) * k))}

    def write_part(self, index: int, data: memoryview) -> None:
        try:
            if self.group_parts == 1:
                self._group_done(index, self._store.put_part(self._part_key(index), data))
            else:
                self._groups.write(index, data)
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, self.name, f"upload part {index + 1} to", self._store.url) from None

    def _send(
        self, session: str, group: int, index: int, data: memoryview, last: bool
    ) -> int | None:
        """Part ``index`` as the next chunk of its group's resumable upload."""
        offset = (index - group * self.group_parts) * self.part_size
        total = self._group_len(group) if last else None
        name = self._store._rel(self._part_key(group))
        return put_chunk(self._store.session, session, offset, data, total, name)

    def _part_key(self, group: int) -> str:
        return f"{self._root}{group:05d}"

    def _group_done(self, group: int, generation: int) -> None:
        with self._lock:
            self._parts[group] = generation

    def interrupt(self) -> None:
        self._groups.interrupt()

    def load_state(self) -> dict[str, Any] | None:
        return self._engine_state

    def checkpoint(self, state: dict[str, Any]) -> None:
        try:
            self._state.checkpoint(self._record(state))
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, self.name, "save resume state to", self._store.url) from None

    def publish(self) -> None:
        count = self._groups_total()
        with self._lock:
            parts = dict(self._parts)
        missing = sorted(set(range(count)) - parts.keys())
        if missing:
            raise DestinationError(
                f"cannot publish: part {missing[0] * self.group_parts + 1} of"
                f" {part_count(self.size, self.part_size)} is not at {self._store.url}",
                file=self.name,
                hint="run again to fetch it",
            )
        sources: list[tuple[str, int | None]] = [
            (f"{self._root}{i:05d}", parts[i]) for i in range(count)
        ]
        try:
            size = self._store.compose_keys(self._key, sources, scratch=f"{self._root}c")
            if size != self.size:
                raise DestinationError(
                    f"the composed object has {size:,} bytes, expected {self.size:,}",
                    file=self.name,
                )
            self._store.delete_keys([self._store.state_key(self.name)])
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, self.name, "compose the upload in", self._store.url) from None
        self._state.forget()
        self._discard_parts()

    def _discard_parts(self) -> None:
        try:
            self._store.delete_keys(self._store.list_keys(self._root))
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            log.warning("could not delete the parts of %s: %s", self.name, exc)

    def abort(self) -> None:
        try:
            self._store.delete_keys([self._store.state_key(self.name)])
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            log.warning("could not delete the resume state of %s: %s", self.name, exc)
        self._state.forget()
        self._discard_parts()

    def close(self) -> None:
        """Leave the parts for a later run, the newest state saved."""
        try:
            self._state.flush()
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            log.warning(
                "could not save the resume state of %s to %s (%s); a rerun on this machine"
                " resumes from its local copy",
                self.name,
                self._store.url,
                exc,
            )


class GCSStore:
    min_part_size = 1 * MiB  # GCS takes objects of any size; small parts cost requests
    default_part_size = 16 * MiB
    max_parts = 1024
    """Parts (and so components) per file: the classic composite-object limit, kept so a
    download never depends on the limit's later removal."""
    checkpoint_interval = 0.0  # parts are not read back: checkpoint each (locally)
    page_aligned_buffers = False

    def __init__(self, url: str, *, endpoint_url: str | None = None, max_connections: int = 32):
        if not HAVE_SDK:
            raise UsageError(
                f"{url} needs the Google Cloud Storage client, which is not installed",
                hint="pip install 'xview2-ingest[gcs]'",
            )
        self.bucket, self.prefix = parse_gcs_url(url)
        self.url = f"gs://{self.bucket}/{self.prefix}" if self.prefix else f"gs://{self.bucket}"
        self.max_connections = max(10, max_connections)
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        project: str | None
        try:
            if emulator or endpoint_url:
                base = endpoint_url or emulator or ""
                self.endpoint = (base if "://" in base else f"http://{base}").rstrip("/")
                credentials: Any = AnonymousCredentials() if emulator else google.auth.default()[0]
                project = os.environ.get("GOOGLE_CLOUD_PROJECT") or "xview2-ingest"
            else:
                credentials, project = google.auth.default()
                self.endpoint = "https://storage.googleapis.com"
        except DefaultCredentialsError as exc:
            raise _error(exc, self.url, "reach", self.url) from None
        self.session = AuthorizedSession(credentials)
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=self.max_connections
        )
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        options = {"api_endpoint": self.endpoint} if endpoint_url and not emulator else None
        self.client = storage.Client(  # one connection pool for every request
            project=project, credentials=credentials, client_options=options, _http=self.session
        )
        self._bucket = self.client.bucket(self.bucket)
        self._retry = Retry(initial=0.5, maximum=32.0, timeout=300.0)

    def part_size_for(self, size: int, planned: int, budget: int) -> int:
        """The engine's planned size, rounded up to :data:`CHUNK_ALIGN`: the parts of a
        group are chunks of one resumable upload."""
        return -(-planned // CHUNK_ALIGN) * CHUNK_ALIGN

    # -- names -----------------------------------------------------------------------
    def key_of(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _work(self, rel: str) -> str:
        return self.key_of(f"{WORK}/{rel}")

    def state_key(self, name: str) -> str:
        return self._work(f"state/{name}.json")

    def parts_root(self, name: str) -> str:
        return self._work(f"parts/{quote(name, safe='')}/")

    def _rel(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    # -- requests --------------------------------------------------------------------
    def _object_url(self, key: str) -> str:
        return f"{self.endpoint}/storage/v1/b/{self.bucket}/o/{quote(key, safe='')}"

    def put_part(self, key: str, data: memoryview | bytes) -> int:
        """Write one object in a single request, the buffer as the body; its generation."""
        url = f"{self.endpoint}/upload/storage/v1/b/{self.bucket}/o"
        params = {"uploadType": "media", "name": key}
        size = len(data) if isinstance(data, bytes) else data.nbytes
        reply = retrying(
            f"upload of {key}",
            lambda: checked(self.session.post(url, params=params, data=data, timeout=300)),
        ).json()
        if int(reply.get("size", -1)) != size:
            raise DestinationError(
                f"the server stored {reply.get('size')} bytes of {size:,}", file=self._rel(key)
            )
        return int(reply["generation"])

    def get_json(self, key: str) -> dict[str, Any] | None:
        data = self._get(key)
        try:
            loaded = json.loads(data) if data is not None else None
        except ValueError:
            return None
        return loaded if isinstance(loaded, dict) else None

    def put_json(self, key: str, record: dict[str, Any]) -> None:
        self.put_part(key, json.dumps(record).encode())

    def _get(self, key: str) -> bytes | None:
        def call() -> requests.Response:
            response = self.session.get(self._object_url(key), params={"alt": "media"})
            return response if response.status_code == 404 else checked(response)

        response = retrying(f"read of {key}", call)
        return None if response.status_code == 404 else response.content

    def _open_at(self, key: str, offset: int) -> IO[bytes]:
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        response = retrying(
            f"read of {key}",
            lambda: checked(
                self.session.get(
                    self._object_url(key),
                    params={"alt": "media"},
                    headers=headers,
                    stream=True,
                    timeout=120,
                )
            ),
        )
        return response.raw  # type: ignore[no-any-return]

    def list_keys(self, prefix: str) -> list[str]:
        return [b.name for b in self.client.list_blobs(self.bucket, prefix=prefix)]

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete objects in parallel; an object already gone is no error."""

        def delete(key: str) -> None:
            def call() -> None:
                response = self.session.delete(self._object_url(key))
                if response.status_code != 404:
                    checked(response)

            retrying(f"delete of {key}", call)

        keys = list(keys)
        if not keys:
            return
        with ThreadPoolExecutor(min(16, len(keys))) as pool:
            list(pool.map(delete, keys))

    def compose_keys(
        self, key: str, sources: list[tuple[str, int | None]], *, scratch: str, workers: int = 8
    ) -> int:
        """Compose ``sources`` (key, generation) into ``key``; return its size.

        At most :data:`COMPOSE_MAX` sources a call.  With more, runs of consecutive
        sources are first composed into ``scratch``-named intermediates (in parallel,
        deleted afterwards): as few and as small as bring the count down to 32, so the
        bytes a server copies while composing (fake-gcs-server copies them all) stay near
        the file's own size.  Each source is pinned to its generation where known.
        """
        if not sources:  # an empty file: nothing to compose
            self.put_part(key, b"")
            return 0
        made: list[str] = []
        try:
            while len(sources) > COMPOSE_MAX:
                runs, out = self._plan_round(sources)
                names = [f"{scratch}{len(made) + j:04d}" for j in range(len(runs))]
                made += names
                with ThreadPoolExecutor(max(1, min(workers, len(runs)))) as pool:
                    done = list(pool.map(self._compose_once, names, [r for _, r in runs]))
                for (at, _), name, (_, generation) in zip(runs, names, done, strict=True):
                    out[at] = (name, generation)
                sources = out
            size, _ = self._compose_once(key, sources)
        finally:
            self.delete_keys(made)
        return size

    @staticmethod
    def _plan_round(
        sources: list[tuple[str, int | None]],
    ) -> tuple[list[tuple[int, list[tuple[str, int | None]]]], list[tuple[str, int | None]]]:
        """Runs to compose this round (each with its place in the next list) and that list,
        its intermediates still to fill in."""
        excess = len(sources) - COMPOSE_MAX
        runs: list[tuple[int, list[tuple[str, int | None]]]] = []
        out: list[tuple[str, int | None]] = []
        i = 0
        while excess > 0 and i < len(sources):
            size = min(COMPOSE_MAX, excess + 1, len(sources) - i)
            runs.append((len(out), sources[i : i + size]))
            out.append(("", None))  # the intermediate, once composed
            i += size
            excess -= size - 1
        return runs, out + sources[i:]

    def _compose_once(self, key: str, sources: list[tuple[str, int | None]]) -> tuple[int, int]:
        blob = self._bucket.blob(key)
        blobs = [self._bucket.blob(k) for k, _ in sources]
        generations = [g for _, g in sources]
        pinned = generations if all(g is not None for g in generations) else None
        blob.compose(blobs, if_source_generation_match=pinned, retry=self._retry)
        return int(blob.size), int(blob.generation)

    # -- the Store protocol ------------------------------------------------------------
    def open_upload(self, name: str, size: int, part_size: int) -> GCSUpload:
        return GCSUpload(self, name, size, part_size)

    def size_of(self, name: str) -> int | None:
        try:
            blob = self._bucket.get_blob(self.key_of(name), retry=self._retry)
        except gexc.GoogleAPICallError as exc:
            raise _error(exc, name, "read", self.url) from None
        return None if blob is None else int(blob.size)

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return self._get(self.key_of(name))
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, name, "read", self.url) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        try:
            self.put_part(self.key_of(name), data)
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, name, "write", self.url) from None

    def open_read(self, name: str) -> IO[bytes]:
        return self.open_read_at(name, 0)

    def open_read_at(self, name: str, offset: int) -> IO[bytes]:
        """A stream of ``name`` from ``offset`` on (one ranged GET); empty at the end."""
        try:
            if offset and offset >= (self.size_of(name) or 0):
                if self.size_of(name) is None:
                    raise DestinationError("not found", file=name)
                return io.BytesIO(b"")
            return self._open_at(self.key_of(name), offset)
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, name, "read", self.url) from None

    def put_stream(self, name: str, stream: IO[bytes], size: int) -> None:
        try:
            if size <= 64 * MiB:
                self.put_part(self.key_of(name), stream.read(size))
            else:  # a resumable upload, 16 MiB a request
                blob = self._bucket.blob(self.key_of(name), chunk_size=16 * MiB)
                blob.upload_from_file(stream, size=size, checksum=None)
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, name, "write", self.url) from None

    def delete(self, name: str) -> None:
        try:
            self.delete_keys([self.key_of(name)])
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, name, "delete", self.url) from None

    def list_files(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self.key_of(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        try:
            for blob in self.client.list_blobs(self.bucket, prefix=base, retry=self._retry):
                rel = self._rel(blob.name)
                if not rel.startswith(f"{WORK}/"):
                    yield rel, int(blob.size)
        except (gexc.GoogleAPICallError, requests.RequestException) as exc:
            raise _error(exc, prefix or "(listing)", "list", self.url) from None

    def _leftovers(self) -> dict[str, dict[str, Any]]:
        """Unfinished uploads by name: their state object and part objects."""
        found: dict[str, dict[str, Any]] = {}
        state, parts = self._work("state/"), self._work("parts/")
        try:
            for blob in self.client.list_blobs(self.bucket, prefix=self._work("")):
                if blob.name.startswith(state) and blob.name.endswith(".json"):
                    name = blob.name[len(state) : -len(".json")]
                    entry = found.setdefault(name, {"parts": [], "state": None})
                    entry["state"] = blob
                elif blob.name.startswith(parts):
                    quoted, _, _leaf = blob.name[len(parts) :].partition("/")
                    entry = found.setdefault(unquote(quoted), {"parts": [], "state": None})
                    entry["parts"].append(blob)
        except (gexc.GoogleAPICallError, requests.RequestException) as exc:
            raise _error(exc, "(uploads)", "list uploads in", self.url) from None
        return found

    def pending_uploads(self) -> list[PendingUpload]:
        out = []
        for name, entry in sorted(self._leftovers().items()):
            parts = [b for b in entry["parts"] if b.name.rsplit("/", 1)[-1].isdigit()]
            started = entry["state"].time_created if entry["state"] is not None else None
            out.append(
                PendingUpload(
                    name,
                    started.isoformat() if started else None,
                    len(parts),
                    sum(int(b.size) for b in parts),
                    "part objects" if entry["state"] else "part objects without resume state",
                )
            )
        return out

    def abort_pending(
        self, name: str | None = None, *, dry_run: bool = False
    ) -> list[PendingUpload]:
        """Delete this tool's part objects and resume state (all, or of ``name``); return
        what was discarded.  ``dry_run`` only lists it."""
        pending = [p for p in self.pending_uploads() if name is None or p.name == name]
        if not dry_run:
            self._discard({p.name for p in pending})
        return pending

    def _discard(self, names: set[str]) -> int:
        count = 0
        for found, entry in self._leftovers().items():
            if found not in names:
                continue
            keys = [b.name for b in entry["parts"]]
            if entry["state"] is not None:
                keys.append(entry["state"].name)
            try:
                self.delete_keys(keys)
            except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
                raise _error(exc, found, "discard the upload in", self.url) from None
            LocalStateCopy(f"{self.endpoint}/{self.bucket}/{self.key_of(found)}").delete()
            count += 1
        return count

    # -- capabilities ------------------------------------------------------------------
    def exclusive(self) -> ObjectLease:
        """The writer's lease ``PREFIX/.xview2/lock.json`` (see :mod:`.objlease`)."""
        key = self._work("lock.json")
        errors = (gexc.GoogleAPICallError, requests.RequestException)
        return ObjectLease(
            _LeaseObject(self._bucket, key, self._retry),
            self.url,
            errors,
            lambda exc: _error(exc, f"{WORK}/lock.json", "take the writer's lease in", self.url),
        )

    def copy(self, source: str, target: str) -> None:
        """Publish ``source`` under ``target`` server-side (a rewrite, however large)."""
        try:
            dest = self._bucket.blob(self.key_of(target))
            token, _, _ = dest.rewrite(self._bucket.blob(self.key_of(source)), retry=self._retry)
            while token is not None:
                token, _, _ = dest.rewrite(
                    self._bucket.blob(self.key_of(source)), token=token, retry=self._retry
                )
        except gexc.GoogleAPICallError as exc:
            raise _error(exc, target, f"copy {source} in", self.url) from None

    def compose(self, name: str, sources: tuple[str, ...], *, workers: int = 8) -> int:
        """Publish the concatenation of the objects ``sources`` as ``name``, server-side
        (compose, in rounds of 32); return its size."""
        pinned: list[tuple[str, int | None]] = []
        for source in sources:
            blob = self._bucket.get_blob(self.key_of(source), retry=self._retry)
            if blob is None:
                raise DestinationError(f"cannot assemble {name}: {source} is missing", file=name)
            pinned.append((blob.name, int(blob.generation)))
        scratch = self._work(f"compose/{uuid.uuid4().hex[:16]}-")
        try:
            return self.compose_keys(self.key_of(name), pinned, scratch=scratch, workers=workers)
        except (gexc.GoogleAPICallError, requests.RequestException, Retryable) as exc:
            raise _error(exc, name, "assemble in", self.url) from None
