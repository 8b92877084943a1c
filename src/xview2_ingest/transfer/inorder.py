"""Parts of a file read in parallel, hashed strictly in order, in bounded memory.

The engine's download path in miniature, for bytes that are already somewhere: ``verify``
reads a published file back (parallel ranged reads), ``import`` reads a file on this
machine and writes its parts to an upload.  Up to ``window`` parts are read at once into
buffers of the engine's :class:`~.buffers.BufferPool`; the calling thread hashes each part
as soon as it and all before it have landed, then hands it to ``write`` (if any), which
runs on the executor while later parts are read and hashed.  At most ``window`` reads and
``window`` writes hold a buffer at a time: memory is ``2 * window`` parts, whatever the
file's size.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future

from .buffers import Buffer, BufferPool
from .digest import Digest

PartIO = Callable[[int, memoryview], None]
"""``(part index, its bytes)``: reads fill the view, writes persist it."""


def hash_in_order(
    parts: range,
    part_len: Callable[[int], int],
    read: PartIO,
    digests: Sequence[Digest],
    pool: BufferPool,
    executor: Executor,
    *,
    window: int,
    write: PartIO | None = None,
    on_part: Callable[[int, int], None] | None = None,
) -> None:
    """Read every part in ``parts``, hash it in order into ``digests``, then ``write`` it.

    ``on_part(index, nbytes)`` is called after each part is hashed.  The first error of a
    read or a write is raised once every part under way has finished; every buffer is
    back in the pool by then.  ``pool`` must hold ``2 * window`` parts (reads and writes
    in flight), or the hashing thread could wait for a buffer only it can free.
    """
    if parts and pool.budget < 2 * window * part_len(parts[0]):
        raise ValueError("the buffer pool must hold 2 * window parts")
    reads: deque[tuple[int, Future[None], Buffer, memoryview]] = deque()
    writes: set[Future[None]] = set()
    slots = threading.BoundedSemaphore(max(1, window))
    todo = iter(parts)
    failed: list[BaseException] = []

    def written(index: int, buf: Buffer, view: memoryview) -> None:
        try:
            assert write is not None
            write(index, view)
        finally:
            pool.release(buf)
            slots.release()

    def start(index: int) -> None:
        size = part_len(index)
        buf = pool.acquire(size, lambda: False)
        assert buf is not None
        view = memoryview(buf)[:size]
        reads.append((index, executor.submit(read, index, view), buf, view))

    try:
        for index in todo:
            start(index)
            if len(reads) >= window:
                break
        while reads:
            index, future, buf, view = reads.popleft()
            try:
                future.result()
            except BaseException:
                pool.release(buf)
                raise
            for digest in digests:
                digest.update(view)
            if on_part is not None:
                on_part(index, view.nbytes)
            if write is None:
                pool.release(buf)
            else:
                slots.acquire()
                writes.add(executor.submit(written, index, buf, view))
            writes = {w for w in writes if not _settled(w, failed)}
            if failed:
                raise failed[0]
            following = next(todo, None)
            if following is not None:
                start(following)
    finally:
        for _, future, buf, _view in reads:
            try:
                future.result()
            except BaseException as exc:  # already failing: keep the first error
                failed.append(exc)
            pool.release(buf)
        for w in writes:
            _settled(w, failed, wait=True)
    if failed:
        raise failed[0]


def _settled(future: Future[None], failed: list[BaseException], *, wait: bool = False) -> bool:
    """Whether ``future`` is over (its error, if any, appended to ``failed``)."""
    if not wait and not future.done():
        return False
    error = future.exception()
    if error is not None:
        failed.append(error)
    return True
