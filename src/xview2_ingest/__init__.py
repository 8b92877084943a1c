"""xview2-ingest: verified, resumable, parallel ingest of the xView2 (xBD) dataset.

The public API mirrors the ``xview2`` command, one function per command::

    from xview2_ingest import build_index, dataset_stats, download, extract, ingest

    report = ingest(["https://download.xview2.org/train_images_labels_targets.tar.gz?..."],
                    "s3://bucket/xview2")
    assert report.ok, report.summary()

and makes it ready to train on (``make_targets``, ``count_pixels``, ``make_splits``,
``make_layout``, ``dataset_stats(bands=True)``, or all at once through ``ingest``).

Every function returns a report satisfying :class:`Report` (``ok``, ``exit_code``,
``summary()``, ``to_dict()``) and reports progress through an optional callback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# ``demo`` names both a subpackage and the function below.  The (empty) subpackage is
# loaded first: loading it later, with its modules on first use, would rebind the name.
from . import demo as demo_package  # noqa: F401
from .api import (
    INCLUDE_CHOICES,
    LAYOUT_KINDS,
    FreshLinks,
    clean,
    dataset_stats,
    demo,
    download,
    extract,
    import_archives,
    ingest,
    open_destination,
    plan_download,
    status,
    verify,
)
from .catalog import Catalog, CatalogEntry, load_catalog
from .errors import ExitCode, XView2Error
from .events import Event, ProgressCallback
from .extract.report import ArchiveResult, ExtractReport
from .lazy import lazy_names
from .links import Link, parse_links_text, read_links
from .reports import (
    CleanReport,
    DownloadPlan,
    DownloadReport,
    FileResult,
    FileStatus,
    ImportReport,
    ImportResult,
    IngestReport,
    PlannedFile,
    Report,
    StatusReport,
    VerifyReport,
    VerifyResult,
)
from .transfer.stopping import graceful_signals

if TYPE_CHECKING:
    from .index.build import IndexReport, build_index
    from .index.stats import DatasetStats
    from .prepare import (
        LayoutReport,
        PixelsReport,
        SplitsReport,
        TargetsReport,
        count_pixels,
        make_layout,
        make_splits,
        make_targets,
    )

# The index and preparation stages bring pyarrow and numpy: loaded with the first of
# these names a program uses, not by every command (see .lazy).
__getattr__ = lazy_names(
    __name__,
    {
        "IndexReport": ".index.build",
        "build_index": ".index.build",
        "DatasetStats": ".index.stats",
        **dict.fromkeys(
            [
                "LayoutReport",
                "PixelsReport",
                "SplitsReport",
                "TargetsReport",
                "count_pixels",
                "make_layout",
                "make_splits",
                "make_targets",
            ],
            ".prepare",
        ),
    },
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "INCLUDE_CHOICES",
    "LAYOUT_KINDS",
    "ArchiveResult",
    "Catalog",
    "CatalogEntry",
    "CleanReport",
    "DatasetStats",
    "DownloadPlan",
    "DownloadReport",
    "Event",
    "ExitCode",
    "ExtractReport",
    "FileResult",
    "FileStatus",
    "FreshLinks",
    "ImportReport",
    "ImportResult",
    "IndexReport",
    "IngestReport",
    "LayoutReport",
    "Link",
    "PixelsReport",
    "PlannedFile",
    "ProgressCallback",
    "Report",
    "SplitsReport",
    "StatusReport",
    "TargetsReport",
    "VerifyReport",
    "VerifyResult",
    "XView2Error",
    "__version__",
    "build_index",
    "clean",
    "count_pixels",
    "dataset_stats",
    "demo",
    "download",
    "extract",
    "graceful_signals",
    "import_archives",
    "ingest",
    "load_catalog",
    "make_layout",
    "make_splits",
    "make_targets",
    "open_destination",
    "parse_links_text",
    "plan_download",
    "read_links",
    "status",
    "verify",
]
