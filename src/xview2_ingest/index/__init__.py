"""The label index (Parquet + GeoParquet) and the dataset statistics.

::

    from xview2_ingest.index import build_index, compute_stats
    report = build_index("s3://bucket/xview2")          # or from_archives=True
    stats = compute_stats("s3://bucket/xview2")
    print(stats.to_csv())

``DEST/index/images.parquet`` holds one row per image (label file), with the pairing key
``image_id`` = ``{disaster}_{id:08d}``, the phase, the paths of the image, label and
target, every metadata field typed, and building counts per damage class.
``DEST/index/buildings.parquet`` holds one row per building, with its pixel polygon as WKT
and its geographic polygon as WKB in ``geometry`` (GeoParquet 1.0, OGC:CRS84), readable
as geometry by GeoParquet readers (geopandas and DuckDB checked in the tests).
"""

from __future__ import annotations

from .build import (
    BUILDINGS_FILE,
    IMAGES_FILE,
    REPORT_FILE,
    IndexReport,
    NoLabelsError,
    build_index,
)
from .labels import DAMAGE_CLASSES, SPLITS
from .stats import DatasetStats, GroupStats, IndexMissingError, compute_stats
from .tables import BUILDINGS_SCHEMA, IMAGES_SCHEMA

__all__ = [
    "BUILDINGS_FILE",
    "BUILDINGS_SCHEMA",
    "DAMAGE_CLASSES",
    "IMAGES_FILE",
    "IMAGES_SCHEMA",
    "REPORT_FILE",
    "SPLITS",
    "DatasetStats",
    "GroupStats",
    "IndexMissingError",
    "IndexReport",
    "NoLabelsError",
    "build_index",
    "compute_stats",
]
