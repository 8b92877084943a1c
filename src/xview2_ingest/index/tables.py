"""Arrow tables of the index and the Parquet/GeoParquet files they are written to.

``images.parquet``: one row per label file (image), metadata typed, building counts per
damage class.  ``buildings.parquet``: one row per building, the pixel polygon as WKT and
the geographic polygon as WKB in ``geometry``, with GeoParquet 1.0 file metadata.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, count, repeat
from operator import is_not
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .geometry import areas, parse_polygons, wkb
from .labels import (
    COUNT_COLUMNS,
    DAMAGE_CLASSES,
    FLOAT_FIELDS,
    INT_FIELDS,
    METADATA_FIELDS,
    LabelError,
    LabelFile,
    check_feature_types,
    parse_label_path,
    read_label,
)

log = logging.getLogger(__name__)

GEOPARQUET_VERSION = "1.0.0"

PIXEL_COLUMNS = ("px_0", "px_1", "px_2", "px_3", "px_4", "px_other")
"""Pixels of the target per value: 0-4, then any other value together."""


def _metadata_type(key: str) -> pa.DataType:
    if key in FLOAT_FIELDS:
        return pa.float64()
    if key in INT_FIELDS:
        return pa.int32()
    if key == "capture_date":
        return pa.timestamp("us", tz="UTC")
    return pa.string()


IMAGES_SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("disaster", pa.string()),
        ("disaster_type", pa.string()),
        ("image_id", pa.string()),
        ("phase", pa.string()),
        ("layout", pa.string()),
        ("image_path", pa.string()),
        ("label_path", pa.string()),
        ("target_path", pa.string()),
        ("archive", pa.string()),
        *[(key, _metadata_type(key)) for key in METADATA_FIELDS],
        ("n_buildings", pa.int32()),
        *[(col, pa.int32()) for col in COUNT_COLUMNS.values()],
        *[(col, pa.int32()) for col in PIXEL_COLUMNS],
    ]
)
"""One row per image (label file).  Paths are relative to the destination; ``archive``
names the archive the label was read from (null when read from the extracted tree).
The ``px_*`` columns count the pixels of the image's target by value (``px_0`` background,
``px_1``-``px_4`` the damage classes, or building for a pre-disaster target, ``px_other``
any other value such as 255 = ignore); they are null until
:func:`xview2_ingest.prepare.count_pixels` fills them in."""

BUILDINGS_SCHEMA = pa.schema(
    [
        ("uid", pa.string()),
        ("split", pa.string()),
        ("disaster", pa.string()),
        ("image_id", pa.string()),
        ("phase", pa.string()),
        ("layout", pa.string()),
        ("subtype", pa.string()),
        ("pixel_wkt", pa.string()),
        ("geometry", pa.binary()),
        ("area_px", pa.float64()),
    ]
)
"""One row per building polygon.  ``geometry``: WKB, longitude/latitude (OGC:CRS84)."""

LOW_CARDINALITY = [
    "split",
    "disaster",
    "disaster_type",
    "phase",
    "layout",
    "archive",
    "subtype",
    "sensor",
    "provider_asset_type",
]


SPILL_DIR: str | None = None
"""Where worker processes leave their results for the writing process (see Batch)."""
_SPILLS = count()


@dataclass
class Batch:
    """The index rows for a batch of label files."""

    images: dict[str, list[Any]]
    """Columns of ``images.parquet`` as Python lists."""
    buildings: pa.Table
    skipped: list[tuple[str, str]] = field(default_factory=list)
    geometry_types: set[str] = field(default_factory=set)
    bounds: list[float] = field(default_factory=list)
    nbytes: int = 0

    def images_table(self) -> pa.Table:
        return pa.Table.from_arrays(
            [typed_array(self.images[f.name], f.type) for f in IMAGES_SCHEMA],
            schema=IMAGES_SCHEMA,
        )

    # Between processes the buildings travel as Arrow IPC, several times cheaper than
    # pickling the table: written to a file in SPILL_DIR (shared memory, /dev/shm) that
    # the receiver maps without a copy, or, failing that, as a buffer through the pipe.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if SPILL_DIR is not None:
            path = os.path.join(SPILL_DIR, f"{os.getpid()}-{next(_SPILLS)}.arrow")
            try:
                with (
                    pa.OSFile(path, "wb") as sink,
                    pa.ipc.new_file(sink, self.buildings.schema) as writer,
                ):
                    writer.write_table(self.buildings)
                state["buildings"] = path
                return state
            except OSError as exc:  # shared memory full or gone: use the pipe
                log.debug("cannot spill a batch to %s: %s", SPILL_DIR, exc)
                with contextlib.suppress(OSError):
                    os.unlink(path)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.buildings.schema) as writer:
            writer.write_table(self.buildings)
        state["buildings"] = sink.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        data = state["buildings"]
        if isinstance(data, str):
            with pa.memory_map(data) as source:
                state["buildings"] = pa.ipc.open_file(source).read_all()
            os.unlink(data)  # the mapping stays valid until the table is freed
        else:
            state["buildings"] = pa.ipc.open_stream(data).read_all()
        self.__dict__.update(state)


def display_name(name: str, archive: str | None) -> str:
    """How a label is named in reports: its path, or ``archive:member``."""
    return f"{archive}:{name}" if archive else name


def build_batch(items: Sequence[tuple[str, bytes | Exception, str | None]]) -> Batch:
    """Parse ``(path, content or read error, archive)`` items into index rows.

    Files that cannot be indexed (unreadable, bad JSON, missing keys, bad WKT, ...) are
    left out and listed in :attr:`Batch.skipped` with the reason.
    """
    files: list[LabelFile] = []
    archives: list[str | None] = []
    skipped: list[tuple[str, str]] = []
    nbytes = 0
    for name, data, archive in items:
        if isinstance(data, Exception):
            skipped.append((display_name(name, archive), f"cannot read: {data}"))
            continue
        nbytes += len(data)
        try:
            files.append(read_label(parse_label_path(name), data))
            archives.append(archive)
        except LabelError as exc:
            skipped.append((display_name(name, archive), str(exc)))

    def drop(bad: dict[int, str]) -> None:
        nonlocal files, archives
        for k, reason in bad.items():
            skipped.append((display_name(files[k].ref.path, archives[k]), reason))
        files = [f for k, f in enumerate(files) if k not in bad]
        archives = [a for k, a in enumerate(archives) if k not in bad]

    try:
        uids, subtypes = _feature_arrays(files)
    except TypeError:
        bad = {}
        for k, f in enumerate(files):
            try:
                check_feature_types(f)
            except LabelError as exc:
                bad[k] = str(exc)
        drop(bad)
        uids, subtypes = _feature_arrays(files)
    while True:
        geo = list(chain.from_iterable(f.geo_wkt for f in files))
        pix = list(chain.from_iterable(f.pixel_wkt for f in files))
        polygons = parse_polygons(geo + pix)
        if not polygons.errors:
            break
        # Drop the files holding a bad polygon (first reason of each) and parse again.
        sizes = np.fromiter((len(f.uids) for f in files), dtype=np.int64, count=len(files))
        ends = np.cumsum(sizes)
        bad = {}
        for i, reason in sorted(polygons.errors.items()):
            kind, j = ("lng_lat", i) if i < len(geo) else ("xy", i - len(geo))
            k = int(np.searchsorted(ends, j, side="right"))
            uid = files[k].uids[j - int(ends[k] - sizes[k])]
            bad.setdefault(k, f"bad WKT in features.{kind} (uid {uid}): {reason}")
        drop(bad)
        uids, subtypes = _feature_arrays(files)
    n_geo = len(geo)
    geometry, types, bounds = wkb(polygons, 0, n_geo)
    area = areas(polygons, n_geo, 2 * n_geo)
    images = _image_columns(files, archives)
    counts = np.fromiter((len(f.uids) for f in files), dtype=np.int64, count=len(files))
    owner = np.repeat(np.arange(len(files), dtype=np.int64), counts)
    owner_array = pa.Array.from_buffers(pa.int64(), len(owner), [None, pa.py_buffer(owner)])
    buildings = pa.Table.from_arrays(
        [
            uids,
            *(
                string_array(images[col]).take(owner_array)
                for col in ("split", "disaster", "image_id", "phase", "layout")
            ),
            subtypes,
            string_array(pix),
            geometry,
            pa.Array.from_buffers(pa.float64(), len(area), [None, pa.py_buffer(area)]),
        ],
        schema=BUILDINGS_SCHEMA,
    )
    return Batch(images, buildings, skipped, types, bounds, nbytes)


def _feature_arrays(files: list[LabelFile]) -> tuple[pa.Array, pa.Array]:
    """uid and subtype columns; raises if a value is not a string (or null subtype)."""
    uids = string_array(list(chain.from_iterable(f.uids for f in files)))
    if uids.null_count:
        raise TypeError("null uid")
    return uids, string_array(list(chain.from_iterable(f.subtypes for f in files)))


# Arrays are built from NumPy buffers rather than with ``pa.array``: faster for long
# strings, and ``pa.array`` makes pyarrow import pandas when it is installed, which costs
# every process a fifth of a second and tens of MB.

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NUMPY = {pa.float64(): np.float64, pa.int32(): np.int32, pa.int64(): np.int64}


def typed_array(values: list[Any], kind: pa.DataType) -> pa.Array:
    """An array of ``kind`` (string, float64, int32/64, timestamp[us, UTC]) from Python
    values, None meaning null."""
    if kind == pa.string():
        return string_array(values)
    n = len(values)
    valid = None
    nulls = 0
    if None in values:
        mask = np.fromiter(map(is_not, values, repeat(None)), dtype=bool, count=n)
        nulls = n - int(np.count_nonzero(mask))
        valid = pa.py_buffer(np.packbits(mask, bitorder="little"))
    if pa.types.is_timestamp(kind):
        values = [0 if v is None else (v - _EPOCH) // _MICROSECOND for v in values]
        data = np.array(values, dtype=np.int64)
    else:
        fill = 0.0 if pa.types.is_floating(kind) else 0
        data = np.array([fill if v is None else v for v in values], dtype=_NUMPY[kind])
    return pa.Array.from_buffers(kind, n, [valid, pa.py_buffer(data)], null_count=nulls)


def string_array(values: list[Any]) -> pa.Array:
    """A string array from str/None values, built from one joined buffer: several times
    faster than ``pa.array`` for the long WKT strings.  Raises TypeError on other types."""
    n = len(values)
    valid = None
    if None in values:
        mask = np.fromiter(map(is_not, values, repeat(None)), dtype=bool, count=n)
        valid = pa.py_buffer(np.packbits(mask, bitorder="little"))
        values = ["" if v is None else v for v in values]
    joined = "".join(values)
    if joined.isascii():
        data = joined.encode("ascii")
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    else:
        encoded = [v.encode() for v in values]
        data = b"".join(encoded)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
    if len(data) >= 2**31:
        raise ValueError("batch too large for a 32-bit string column")
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    nulls = n - int(np.count_nonzero(mask)) if valid is not None else 0
    return pa.Array.from_buffers(
        pa.string(), n, [valid, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls
    )


def _image_columns(files: list[LabelFile], archives: list[str | None]) -> dict[str, list[Any]]:
    refs = [f.ref for f in files]
    metas = [f.meta for f in files]
    post = [r.phase == "post" for r in refs]
    columns: dict[str, list[Any]] = {
        "split": [r.split for r in refs],
        "disaster": [m["disaster"] for m in metas],
        "image_id": [r.image_id for r in refs],
        "phase": [r.phase for r in refs],
        "layout": [r.layout for r in refs],
        "image_path": [r.image_path for r in refs],
        "label_path": [r.path for r in refs],
        "target_path": [r.target_path for r in refs],
        "archive": list(archives),
        "n_buildings": [len(f.uids) for f in files],
        **{col: [None] * len(files) for col in PIXEL_COLUMNS},
    }
    for key in ("disaster_type", *METADATA_FIELDS):
        columns[key] = [m[key] for m in metas]
    for damage, col in COUNT_COLUMNS.items():
        columns[col] = [
            f.subtypes.count(damage) if p else 0 for f, p in zip(files, post, strict=True)
        ]
    return columns


def geo_metadata(geometry_types: set[str], bounds: list[float]) -> dict[str, Any]:
    """GeoParquet 1.0 file metadata for the ``geometry`` column.

    ``crs`` is omitted, which GeoParquet defines as OGC:CRS84 (WGS 84 longitude/latitude),
    exactly what the labels' ``lng_lat`` polygons are.
    """
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": sorted(geometry_types)}
    if len(bounds) == 4:
        column["bbox"] = bounds
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": "geometry",
        "columns": {"geometry": column},
    }


class ParquetSink:
    """Streams tables into one Parquet file in row groups of about ``row_group_rows``.

    File metadata known only once every row is seen (the ``geo`` key: geometry types and
    bounding box) is added when closing.  The Arrow schema is then not embedded
    (``store_schema=False``), so that this metadata is what every reader, pyarrow
    included, returns as the schema metadata.  pyarrow before 17 cannot add metadata to
    an open writer: there ``early_metadata`` is written from the start instead.
    """

    LATE_METADATA = hasattr(pq.ParquetWriter, "add_key_value_metadata")

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: pa.Schema,
        *,
        row_group_rows: int = 64_000,
        compression: str = "zstd",
        early_metadata: dict[str, Any] | None = None,
    ):
        self.rows = 0
        self._limit = row_group_rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        binary = [f.name for f in schema if f.type in (pa.binary(), pa.large_binary())]
        text_heavy = {"uid", "pixel_wkt", *binary}
        if early_metadata and not self.LATE_METADATA:
            schema = schema.with_metadata({k: json.dumps(v) for k, v in early_metadata.items()})
        self.schema = schema
        self._writer = pq.ParquetWriter(
            path,
            schema,
            compression=compression,
            use_dictionary=[c for c in LOW_CARDINALITY if c in schema.names],
            write_statistics=[c for c in schema.names if c not in text_heavy],
            store_schema=not self.LATE_METADATA,
        )

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self._limit:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.concat_tables(self._pending)
            self._writer.write_table(table, row_group_size=max(self._limit, table.num_rows))
            self.rows += table.num_rows
        self._pending, self._pending_rows = [], 0
        pa.default_memory_pool().release_unused()

    def close(self, metadata: dict[str, Any] | None = None) -> None:
        """Write what is left and the footer, with ``metadata`` values JSON-encoded."""
        self._flush()
        if metadata and self.LATE_METADATA:
            self._writer.add_key_value_metadata({k: json.dumps(v) for k, v in metadata.items()})
        elif metadata:
            log.info("pyarrow < 17: the file keeps the metadata given when it was opened")
        self._writer.close()

    def abort(self) -> None:
        try:
            self._writer.close()
        except Exception as exc:  # the file is discarded anyway
            log.debug("closing an aborted Parquet writer: %s", exc)


__all__ = [
    "BUILDINGS_SCHEMA",
    "DAMAGE_CLASSES",
    "IMAGES_SCHEMA",
    "PIXEL_COLUMNS",
    "Batch",
    "ParquetSink",
    "build_batch",
    "geo_metadata",
]
