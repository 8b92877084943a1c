"""Getting the dataset ready to train on: targets for every split, pixel statistics,
reproducible train/val splits, and the folder layouts training code expects.

::

    from xview2_ingest.prepare import make_targets, count_pixels, make_splits, make_layout
    make_targets("./data/xview2")                    # tier3 targets, official convention
    count_pixels("./data/xview2")                    # px_* columns of images.parquet
    make_splits("./data/xview2", val_fraction=0.1, include_tier3=True)
    make_layout("./data/xview2", "torchgeo", include_tier3=True)

Every function takes plain values, reports progress through the callback it is given,
and returns a report with ``ok``, ``exit_code``, ``summary()`` and ``to_dict()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_names
from .kinds import KINDS

if TYPE_CHECKING:
    from .bands import BANDS_FILE, BandStats, BandStatsReport, band_stats
    from .layout import LayoutReport, make_layout
    from .pixels import PixelsReport, count_pixels
    from .raster import IGNORE, UNCLASSIFIED_DEFAULT, MaskRule, MissingDependencyError
    from .splits import SPLITS_FILE, SplitsReport, make_splits
    from .targets import TargetsReport, make_targets

# numpy and pyarrow load with the first of these a program uses (see ..lazy)
__getattr__ = lazy_names(
    __name__,
    {
        **dict.fromkeys(["BANDS_FILE", "BandStats", "BandStatsReport", "band_stats"], ".bands"),
        **dict.fromkeys(["LayoutReport", "make_layout"], ".layout"),
        **dict.fromkeys(["PixelsReport", "count_pixels"], ".pixels"),
        **dict.fromkeys(
            ["IGNORE", "UNCLASSIFIED_DEFAULT", "MaskRule", "MissingDependencyError"], ".raster"
        ),
        **dict.fromkeys(["SPLITS_FILE", "SplitsReport", "make_splits"], ".splits"),
        **dict.fromkeys(["TargetsReport", "make_targets"], ".targets"),
    },
)

__all__ = [
    "BANDS_FILE",
    "IGNORE",
    "KINDS",
    "SPLITS_FILE",
    "UNCLASSIFIED_DEFAULT",
    "BandStats",
    "BandStatsReport",
    "LayoutReport",
    "MaskRule",
    "MissingDependencyError",
    "PixelsReport",
    "SplitsReport",
    "TargetsReport",
    "band_stats",
    "count_pixels",
    "make_layout",
    "make_splits",
    "make_targets",
]
