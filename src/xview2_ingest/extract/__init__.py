"""Safe, streaming, resumable extraction of the downloaded archives (local folder or S3).

from xview2_ingest import extract
report = extract(dest="s3://bucket/xview2")
assert report.ok, report.summary()
"""

from __future__ import annotations

from ..archive.decode import DECODER
from .core import Extractor
from .errors import (
    ArchiveChecksumError,
    ArchiveNotDownloadedError,
    ArchiveTruncatedError,
    CorruptArchiveError,
    UnsafeArchiveError,
    UnsafeMemberError,
)
from .plan import is_archive
from .report import ArchiveResult, ExtractReport

__all__ = [
    "DECODER",
    "ArchiveChecksumError",
    "ArchiveNotDownloadedError",
    "ArchiveResult",
    "ArchiveTruncatedError",
    "CorruptArchiveError",
    "ExtractReport",
    "Extractor",
    "UnsafeArchiveError",
    "UnsafeMemberError",
    "is_archive",
]
