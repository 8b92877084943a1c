"""``count_pixels``: pixels per target value for every image, as columns of the index.

Fills the ``px_0`` ... ``px_4`` and ``px_other`` columns of ``index/images.parquet``
from the targets in place, shipped or made.  Targets made by :func:`.make_targets` carry
their counts in its record and are not decoded again (when the file in place still has
the recorded size); the others are decoded in parallel.  The index is rewritten whole and
published atomically.  An image without a target keeps null counts.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ExitCode, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..index.build import IMAGES_FILE
from ..index.stats import IndexMissingError
from ..index.tables import PIXEL_COLUMNS
from ..settings import dest_setting
from ..stores import Store, open_store
from . import raster
from .common import batches, default_workers, listing, map_io, read_file, run_ordered
from .targets import load_records

log = logging.getLogger(__name__)

TASK_TARGETS = 64


@dataclass
class PixelsReport:
    """What :func:`count_pixels` did."""

    dest: str
    images: int = 0
    from_record: int = 0
    """Counts taken from the record of targets made by make_targets."""
    decoded: int = 0
    without_target: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.FAILURE

    def summary(self) -> str:
        failed = f", {len(self.failed):,} unreadable" if self.failed else ""
        return (
            f"pixel counts for {self.images - self.without_target:,} of {self.images:,} "
            f"images ({self.decoded:,} targets decoded, {self.from_record:,} from the "
            f"targets record{failed}) in {self.seconds:.1f}s -> {self.dest.rstrip('/')}/"
            f"{IMAGES_FILE}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "images": self.images,
            "from_record": self.from_record,
            "decoded": self.decoded,
            "without_target": self.without_target,
            "failed": [{"file": f, "reason": r} for f, r in self.failed],
            "totals": self.totals,
            "seconds": round(self.seconds, 3),
        }


def read_images_table(store: Store) -> pa.Table:
    """``index/images.parquet`` as one table, or :class:`IndexMissingError`."""
    data = store.read_bytes(IMAGES_FILE)
    if data is None:
        raise IndexMissingError(
            f"no index at {store.url}", file=IMAGES_FILE, hint="build it first: xview2 index"
        )
    return pq.read_table(pa.BufferReader(data), use_threads=False)


def count_pixels(
    dest: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
) -> PixelsReport:
    """Fill the ``px_*`` columns of ``DEST/index/images.parquet`` from the targets."""
    started = time.monotonic()
    emit = progress or no_progress
    raster.cv2_module()
    store = open_store(dest_setting(dest), endpoint_url=endpoint_url)
    workers = default_workers(workers)
    table = read_images_table(store)
    report = PixelsReport(store.url, images=table.num_rows)
    paths: list[str | None] = table.column("target_path").to_pylist()
    records = load_records(store)
    present: dict[str, int] = {}
    for split in sorted({p.split("/", 1)[0] for p in paths if p}):
        present |= listing(store, f"{split}/targets")
    counts: list[list[int] | None] = [None] * len(paths)
    todo: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        if not path or path not in present:
            report.without_target += 1
            continue
        entry = records.get(path)
        if entry and entry.get("size") == present[path] and len(entry.get("pixels", ())) == 6:
            counts[i] = [int(v) for v in entry["pixels"]]
            report.from_record += 1
        else:
            todo.append((i, path))
    emit(Event("stage", "pixels", detail=f"decoding {len(todo):,} targets"))
    emit(Event("started", "pixels", total=len(todo)))
    tasks: Iterator[list[tuple[int, str]]] = batches(todo, TASK_TARGETS)
    for results in run_ordered(
        _count_task, tasks, store, workers=workers, endpoint_url=endpoint_url
    ):
        for i, path, value in results:
            if isinstance(value, str):
                report.failed.append((path, value))
                report.without_target += 1
            else:
                counts[i] = value
                report.decoded += 1
        emit(Event("bytes", "pixels", done=len(results), total=len(todo)))
    for k, name in enumerate(PIXEL_COLUMNS):
        values = [c[k] if c is not None else None for c in counts]
        array = pa.array(values, type=pa.int32())
        where = table.schema.get_field_index(name)
        if where < 0:
            table = table.append_column(name, array)
        else:
            table = table.set_column(where, name, array)
        report.totals[name] = int(sum(v for v in values if v is not None))
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    store.write_bytes(IMAGES_FILE, out.getvalue())
    emit(Event("published", IMAGES_FILE, done=len(out.getvalue())))
    report.seconds = time.monotonic() - started
    return report


def _count_task(store: Store, items: list[tuple[int, str]]) -> list[tuple[int, str, Any]]:
    def one(item: tuple[int, str]) -> tuple[int, str, Any]:
        i, path = item
        try:
            return i, path, raster.pixel_counts(raster.decode_png(read_file(store, path)))
        except (XView2Error, ValueError) as exc:
            return i, path, f"cannot read the target: {exc}"

    return map_io(one, items, store)
