"""Plumbing shared by the preparation steps: listing, reading and writing many small
files in any store, and a pool of worker processes that returns results in order."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import DestinationError, XView2Error
from ..index.labels import SPLITS
from ..stores import LocalFiles, Store, open_store

log = logging.getLogger(__name__)

IO_THREADS = 16
"""Concurrent requests per process for an object store (reads and writes are
latency-bound there)."""

T = TypeVar("T")
R = TypeVar("R")


def listing(store: Store, prefix: str) -> dict[str, int]:
    """Published files directly under the folder ``prefix`` -> size (a cheap scan on a
    local folder, a listing on an object store)."""
    prefix = prefix.rstrip("/")
    if isinstance(store, LocalFiles):
        folder = store.root / prefix
        try:
            with os.scandir(folder) as entries:
                return {
                    f"{prefix}/{e.name}": e.stat().st_size
                    for e in entries
                    if e.is_file() and not e.name.startswith(".")
                }
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise DestinationError(f"cannot list: {exc.strerror or exc}", file=prefix) from None
    depth = prefix.count("/") + 1
    return {
        name: size
        for name, size in store.list_files(prefix + "/")
        if name.count("/") == depth and not name.rsplit("/", 1)[-1].startswith(".")
    }


def present_splits(store: Store, wanted: Iterable[str] | None = None) -> list[str]:
    """Splits (of ``wanted``, default all four) whose ``labels`` folder holds files."""
    return [s for s in (wanted or SPLITS) if listing(store, f"{s}/labels")]


def local_path(store: LocalFiles, name: str) -> Path:
    """The path of ``name`` in a local store; names of plain relative parts are joined
    directly (``path_of`` resolves links, which costs more than the write itself)."""
    parts = name.split("/")
    if name.startswith("/") or ".." in parts or "" in parts:
        return store.path_of(name)
    return store.root / name


def read_file(store: Store, name: str) -> bytes:
    """A whole file; :class:`DestinationError` when it is missing."""
    if isinstance(store, LocalFiles):
        try:
            with open(local_path(store, name), "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise DestinationError(f"cannot read: {exc.strerror or exc}", file=name) from None
    data = store.read_bytes(name)
    if data is None:
        raise DestinationError("vanished while being read", file=name)
    return data


def publish_file(store: Store, name: str, data: bytes) -> None:
    """Write ``data`` under ``name`` atomically: locally a temporary file renamed into
    place (not synced here: callers sync before recording it, see :func:`sync`), on an
    object store one PUT (an object appears whole or not at all)."""
    if not isinstance(store, LocalFiles):
        store.write_bytes(name, data)
        return
    path = local_path(store, name)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise DestinationError(f"cannot write: {exc.strerror or exc}", file=name) from None


def sync(store: Store) -> None:
    """Make files published with :func:`publish_file` durable (local stores only)."""
    if isinstance(store, LocalFiles) and hasattr(os, "sync"):
        os.sync()


def map_io(fn: Callable[[T], R], items: list[T], store: Store) -> list[R]:
    """``fn`` over ``items`` in order: in this thread locally, on threads otherwise."""
    if isinstance(store, LocalFiles) or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(min(IO_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def start_method() -> str:
    """``fork`` on Linux while this process runs no other thread (instant, nothing
    imported again), else ``spawn`` (threads would be copied in an unknown state)."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return "fork"
    return "spawn"


_worker_store: Store | None = None


def _init_worker(url: str, endpoint_url: str | None) -> None:
    global _worker_store
    _worker_store = open_store(url, endpoint_url=endpoint_url)


def _run_in_worker(fn: Callable[[Store, Any], Any], task: Any) -> Any:
    assert _worker_store is not None
    return fn(_worker_store, task)


def run_ordered(
    fn: Callable[[Store, T], R],
    tasks: Iterable[T],
    store: Store,
    *,
    workers: int,
    endpoint_url: str | None = None,
) -> Iterator[R]:
    """``fn(store, task)`` for every task, results in task order.

    With one worker, or a single task, everything runs in this process; otherwise in a
    pool of ``workers`` processes (each opening its own store) with at most two tasks
    per worker in flight, so memory stays bounded whatever the number of tasks.
    ``fn`` must be a module-level function (it is sent to the workers by reference).
    """
    it = iter(tasks)
    first = next(it, None)
    if first is None:
        return
    second = next(it, None)
    if workers <= 1 or second is None:
        yield fn(store, first)
        if second is not None:
            yield fn(store, second)
            for task in it:
                yield fn(store, task)
        return
    context = multiprocessing.get_context(start_method())
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(store.url, endpoint_url)
    ) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for task in _chain(first, second, it):
                pending.append(pool.submit(_run_in_worker, fn, task))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _chain(first: T, second: T, rest: Iterator[T]) -> Iterator[T]:
    yield first
    yield second
    yield from rest


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def default_workers(workers: int | None) -> int:
    if workers is not None and workers < 1:
        raise XView2Error(f"workers must be at least 1, got {workers}")
    return workers or os.cpu_count() or 1
