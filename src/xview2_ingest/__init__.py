"""xview2-ingest: verified, resumable, parallel ingest of the xView2 (xBD) dataset.

The public API mirrors the ``xview2`` command::

    from xview2_ingest import download, status
    report = download(["https://download.xview2.org/train_images_labels_targets.tar.gz?..."],
                      "s3://bucket/xview2")
    assert report.ok, report.summary()
"""

from __future__ import annotations

import logging

from .api import clean, download, links_from, open_destination, status
from .catalog import Catalog, CatalogEntry, load_catalog
from .errors import ExitCode, XView2Error
from .events import Event
from .links import Link, parse_links_text, read_links
from .reports import DownloadReport, FileResult, Report

logging.getLogger(__name__).addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Catalog",
    "CatalogEntry",
    "DownloadReport",
    "Event",
    "ExitCode",
    "FileResult",
    "Link",
    "Report",
    "XView2Error",
    "clean",
    "download",
    "links_from",
    "load_catalog",
    "open_destination",
    "parse_links_text",
    "read_links",
    "status",
]
