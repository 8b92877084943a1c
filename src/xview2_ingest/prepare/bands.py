"""``band_stats``: per-split, per-band mean and standard deviation of the images.

One streamed pass over ``<split>/images/*.png``: each image is decoded, its bands are
histogrammed (256 bins), and only the histograms travel back, so memory holds one image
per worker.  Sums are exact integers, so the result does not depend on the order or the
number of workers.  Written to ``index/bands.json`` with the file count and bytes of each
split, so that a later call reuses it while the images are unchanged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ExitCode, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..index.labels import SPLITS
from ..settings import dest_setting
from ..stores import Store, open_store
from . import raster
from .common import batches, default_workers, listing, map_io, read_file, run_ordered

log = logging.getLogger(__name__)

BANDS_FILE = "index/bands.json"
BAND_NAMES = ("red", "green", "blue")
TASK_IMAGES = 16


class NoImagesError(XView2Error):
    """No ``<split>/images/*.png`` at the destination."""


@dataclass
class BandStats:
    """Statistics of one band over every pixel of a split's images."""

    band: str
    pixels: int
    mean: float
    std: float
    min: int
    max: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "band": self.band,
            "pixels": self.pixels,
            "mean": round(self.mean, 6),
            "std": round(self.std, 6),
            "min": self.min,
            "max": self.max,
        }


def from_histogram(band: str, hist: np.ndarray) -> BandStats:
    """Exact mean and population standard deviation from a 256-bin histogram."""
    counts = [int(c) for c in hist]
    n = sum(counts)
    if not n:
        return BandStats(band, 0, math.nan, math.nan, 0, 0)
    total = sum(v * c for v, c in enumerate(counts))
    squares = sum(v * v * c for v, c in enumerate(counts))
    variance = (squares * n - total * total) / (n * n)  # integers until here: exact
    nonzero = [v for v, c in enumerate(counts) if c]
    return BandStats(band, n, total / n, math.sqrt(variance), nonzero[0], nonzero[-1])


@dataclass
class BandStatsReport:
    """What :func:`band_stats` found; ``splits`` maps a split to its bands."""

    dest: str
    splits: dict[str, list[BandStats]] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)
    reused: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.FAILURE

    def summary(self) -> str:
        parts = [
            f"{split} ({self.images.get(split, 0):,} images): "
            + ", ".join(f"{b.band} {b.mean:.2f}±{b.std:.2f}" for b in bands)
            for split, bands in self.splits.items()
        ]
        how = "from index/bands.json" if self.reused else f"in {self.seconds:.1f}s"
        failed = f"; {len(self.failed):,} unreadable image(s)" if self.failed else ""
        return f"band mean±std {how}: {'; '.join(parts)}{failed}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "images": self.images,
            "splits": {s: [b.to_dict() for b in bands] for s, bands in self.splits.items()},
            "failed": [{"file": f, "reason": r} for f, r in self.failed],
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
        }


def band_stats(
    dest: str | os.PathLike[str] | None = None,
    *,
    splits: Sequence[str] | None = None,
    recompute: bool = False,
    workers: int | None = None,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
) -> BandStatsReport:
    """Per-band mean/std of ``<split>/images/*.png`` for each split (default: all present).

    Reuses ``index/bands.json`` when it describes the same image files (count and bytes
    per split), unless ``recompute``.  Colour images give red, green, blue (alpha is
    ignored); greyscale ones a single ``grey`` band.
    """
    started = time.monotonic()
    emit = progress or no_progress
    raster.cv2_module()
    store = open_store(dest_setting(dest), endpoint_url=endpoint_url)
    workers = default_workers(workers)
    report = BandStatsReport(store.url)
    files: dict[str, dict[str, int]] = {}
    for split in splits or SPLITS:
        found = {n: s for n, s in listing(store, f"{split}/images").items() if n.endswith(".png")}
        if found:
            files[split] = found
    if not files:
        raise NoImagesError(
            f"no images under {store.url}/<split>/images", hint="extract the archives first"
        )
    fingerprint = {s: [len(f), sum(f.values())] for s, f in files.items()}
    saved = None if recompute else _load(store)
    if saved and saved.get("fingerprint") == fingerprint:
        report.reused = True
        for split, bands in saved["splits"].items():
            report.splits[split] = [BandStats(**b) for b in bands]
        report.images = {s: n for s, (n, _) in fingerprint.items()}
        return report
    for split, found in files.items():
        emit(Event("stage", f"bands {split}", detail=f"{len(found):,} images"))
        emit(Event("started", f"bands {split}", total=sum(found.values())))
        hist = np.zeros((4, 256), dtype=np.int64)
        channels = 0
        tasks: Iterator[list[tuple[str, int]]] = batches(sorted(found.items()), TASK_IMAGES)
        for part, nbands, failed, nbytes in run_ordered(
            _hist_task, tasks, store, workers=workers, endpoint_url=endpoint_url
        ):
            hist += part
            channels = max(channels, nbands)
            report.failed.extend(failed)
            emit(Event("bytes", f"bands {split}", done=nbytes))
        names = BAND_NAMES if channels >= 3 else ("grey",)
        report.splits[split] = [from_histogram(b, hist[i]) for i, b in enumerate(names)]
        report.images[split] = len(found)
    report.seconds = time.monotonic() - started
    if not report.failed:
        data = report.to_dict() | {"fingerprint": fingerprint}
        data["splits"] = {s: [b.__dict__ for b in bands] for s, bands in report.splits.items()}
        store.write_bytes(BANDS_FILE, json.dumps(data, indent=1).encode())
    return report


def _load(store: Store) -> dict[str, Any] | None:
    data = store.read_bytes(BANDS_FILE)
    try:
        loaded = json.loads(data) if data else None
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _hist_task(
    store: Store, items: list[tuple[str, int]]
) -> tuple[np.ndarray, int, list[tuple[str, str]], int]:
    hist = np.zeros((4, 256), dtype=np.int64)
    failed: list[tuple[str, str]] = []
    channels = 0

    def read(item: tuple[str, int]) -> bytes | Exception:
        try:
            return read_file(store, item[0])
        except XView2Error as exc:
            return exc

    # read a few at a time: an object store needs concurrency, memory needs a bound
    for group in batches(items, 4):
        for (name, _), data in zip(group, map_io(read, group, store), strict=True):
            if isinstance(data, Exception):
                failed.append((name, str(data)))
                continue
            try:
                image = raster.decode_png(data, grey=False)
            except ValueError as exc:
                failed.append((name, str(exc)))
                continue
            bands = 3 if image.shape[2] >= 3 else 1
            channels = max(channels, bands)
            for b in range(bands):
                hist[b] += raster.histogram(image[:, :, b])
    return hist, channels, failed, sum(size for _, size in items)
