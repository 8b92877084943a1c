"""Synthetic xView2 archives in the real layout, for the demo, the tests and benchmarks.

``<split>/images/{disaster}_{id:08d}_{pre|post}_disaster.png``, the label JSON of the same
stem under ``labels/``, and ``{stem}_target.png`` under ``targets/``, packed as
``{split}_images_labels_targets.tar.gz`` (``tier3.tar.gz`` for tier3).  Images are tiny
PNGs; labels follow the real schema (``features.lng_lat``/``features.xy`` with ``uid`` and,
post-disaster, ``subtype``; the full ``metadata`` block).  :class:`SynthStats` returns what
was written so tests can check an index against it.
"""

from __future__ import annotations

import io
import json
import random
import struct
import tarfile
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TIER1_DISASTERS = {
    "guatemala-volcano": "volcano",
    "hurricane-florence": "flooding",
    "hurricane-harvey": "flooding",
    "hurricane-matthew": "wind",
    "hurricane-michael": "wind",
    "mexico-earthquake": "earthquake",
    "midwest-flooding": "flooding",
    "palu-tsunami": "tsunami",
    "santa-rosa-wildfire": "fire",
    "socal-fire": "fire",
}
TIER3_DISASTERS = {
    "joplin-tornado": "tornado",
    "lower-puna-volcano": "volcano",
    "moore-tornado": "tornado",
    "nepal-flooding": "flooding",
    "pinery-bushfire": "fire",
    "portugal-wildfire": "fire",
    "sunda-tsunami": "tsunami",
    "tuscaloosa-tornado": "tornado",
    "woolsey-fire": "fire",
}
SUBTYPES = ("no-damage", "minor-damage", "major-damage", "destroyed", "un-classified")
ARCHIVE_NAMES = {
    "train": "train_images_labels_targets.tar.gz",
    "test": "test_images_labels_targets.tar.gz",
    "hold": "hold_images_labels_targets.tar.gz",
    "tier3": "tier3.tar.gz",
}


def png(width: int, height: int, channels: int, fill: int | bytes = 0) -> bytes:
    """A minimal valid 8-bit PNG (grey or RGB) of one fill value."""
    color_type = {1: 0, 3: 2}[channels]
    pixel = bytes([fill]) * channels if isinstance(fill, int) else bytes(fill[:channels])
    raw = b"".join(b"\x00" + pixel * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@dataclass
class SynthStats:
    """What the generator wrote, per split."""

    pairs: Counter[str] = field(default_factory=Counter)
    pairs_by_disaster: Counter[tuple[str, str]] = field(default_factory=Counter)
    buildings: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(split, phase, subtype or '') -> buildings."""
    members: Counter[str] = field(default_factory=Counter)
    """split -> regular files in the archive (label files, for a label-only tree)."""
    buildings_by_disaster: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    """(split, disaster, phase, subtype or '') -> buildings."""

    def merge(self, other: SynthStats) -> None:
        """Add the counts of ``other`` (from another worker or split) to these."""
        self.pairs.update(other.pairs)
        self.pairs_by_disaster.update(other.pairs_by_disaster)
        self.buildings.update(other.buildings)
        self.members.update(other.members)
        self.buildings_by_disaster.update(other.buildings_by_disaster)


def _polygon(rng: random.Random, x0: float, y0: float, scale: float) -> list[tuple[float, float]]:
    w, h = rng.uniform(0.3, 1.0) * scale, rng.uniform(0.3, 1.0) * scale
    return [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h), (x0, y0)]


def _wkt(points: list[tuple[float, float]]) -> str:
    return "POLYGON ((" + ", ".join(f"{x:.10g} {y:.10g}" for x, y in points) + "))"


def label(
    rng: random.Random,
    disaster: str,
    dtype: str,
    image_id: int,
    phase: str,
    buildings: list[tuple[str, str | None]],
    size: int,
) -> dict[str, object]:
    """A label in the real schema; ``buildings`` is a list of (uid, subtype)."""
    lon0, lat0 = rng.uniform(-120, 120), rng.uniform(-40, 50)
    xy, lng_lat = [], []
    for uid, subtype in buildings:
        x, y = rng.uniform(0, size - 40), rng.uniform(0, size - 40)
        pix = _polygon(rng, x, y, 30)
        geo = [(lon0 + px * 3e-6, lat0 - py * 3e-6) for px, py in pix]
        props: dict[str, object] = {"feature_type": "building", "uid": uid}
        if subtype is not None:
            props["subtype"] = subtype
        xy.append({"properties": props, "wkt": _wkt(pix)})
        lng_lat.append({"properties": dict(props), "wkt": _wkt(geo)})
    stem = f"{disaster}_{image_id:08d}_{phase}_disaster"
    return {
        "features": {"lng_lat": lng_lat, "xy": xy},
        "metadata": {
            "sensor": "WORLDVIEW02",
            "provider_asset_type": "WORLDVIEW02",
            "gsd": round(rng.uniform(1.8, 2.6), 6),
            "capture_date": (
                f"2018-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                f"T16:0{rng.randint(0, 9)}:00.000Z"
            ),
            "off_nadir_angle": round(rng.uniform(5, 35), 6),
            "pan_resolution": round(rng.uniform(0.4, 0.7), 6),
            "sun_azimuth": round(rng.uniform(100, 200), 6),
            "sun_elevation": round(rng.uniform(20, 70), 6),
            "target_azimuth": round(rng.uniform(0, 360), 6),
            "disaster": disaster,
            "disaster_type": dtype,
            "catalog_id": uuid.UUID(int=rng.getrandbits(128)).hex[:16],
            "original_width": size,
            "original_height": size,
            "width": size,
            "height": size,
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "img_name": f"{stem}.png",
        },
    }


def make_split_archive(
    out_dir: str | Path,
    split: str,
    pairs: int,
    *,
    seed: int = 0,
    image_size: int = 16,
    max_buildings: int = 6,
    padding: int = 0,
    stats: SynthStats | None = None,
    name: str | None = None,
    targets: bool = True,
    label_size: int = 1024,
) -> Path:
    """Write ``{split}`` as a .tar.gz of ``pairs`` pre/post image pairs; return its path.

    ``padding`` adds incompressible bytes to each image so archives reach a chosen size.
    ``targets=False`` leaves out ``targets/`` (as the real tier3 archive does).
    ``label_size`` is the image size the labels describe (their polygons lie inside it
    and their metadata says so; at least 48).
    """
    rng = random.Random(f"{seed}-{split}")
    stats = stats if stats is not None else SynthStats()
    disasters = TIER3_DISASTERS if split == "tier3" else TIER1_DISASTERS
    path = Path(out_dir) / (name or ARCHIVE_NAMES.get(split, f"{split}.tar.gz"))
    path.parent.mkdir(parents=True, exist_ok=True)
    image = png(image_size, image_size, 3, 90)
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for sub in ("images", "labels", "targets") if targets else ("images", "labels"):
            info = tarfile.TarInfo(f"{split}/{sub}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        names = sorted(disasters)
        for i in range(pairs):
            disaster = names[i % len(names)]
            image_id = i * 3 + rng.randint(0, 2)
            n = rng.randint(0, max_buildings)
            uids = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(n)]
            stats.pairs[split] += 1
            stats.pairs_by_disaster[(split, disaster)] += 1
            for phase in ("pre", "post"):
                subtypes: list[str | None] = (
                    [rng.choice(SUBTYPES) for _ in uids] if phase == "post" else [None] * n
                )
                for s in subtypes:
                    stats.buildings[(split, phase, s or "")] += 1
                    stats.buildings_by_disaster[(split, disaster, phase, s or "")] += 1
                stem = f"{disaster}_{image_id:08d}_{phase}_disaster"
                doc = label(
                    rng,
                    disaster,
                    disasters[disaster],
                    image_id,
                    phase,
                    list(zip(uids, subtypes, strict=True)),
                    label_size,
                )
                img = image + (rng.randbytes(padding) if padding else b"")
                members = [
                    (f"{split}/images/{stem}.png", img),
                    (f"{split}/labels/{stem}.json", json.dumps(doc).encode()),
                ]
                if targets:
                    target = png(image_size, image_size, 1, 1)
                    members.append((f"{split}/targets/{stem}_target.png", target))
                for member, data in members:
                    info = tarfile.TarInfo(member)
                    info.size, info.mode, info.mtime = len(data), 0o644, 1_570_000_000
                    tar.addfile(info, io.BytesIO(data))
                    stats.members[split] += 1
    return path


def make_dataset(
    out_dir: str | Path, pairs: dict[str, int] | None = None, *, seed: int = 0, **kw: object
) -> tuple[list[Path], SynthStats]:
    """Archives for several splits (default: a small train and test)."""
    stats = SynthStats()
    paths = [
        make_split_archive(out_dir, split, n, seed=seed, stats=stats, **kw)  # type: ignore[arg-type]
        for split, n in (pairs or {"train": 6, "test": 3}).items()
    ]
    return paths, stats


# --------------------------------------------------------------------------------------
# A label-only tree at full scale, for the index benchmark and tests.

REAL_PAIRS = {"train": 2799, "test": 933, "hold": 933, "tier3": 6369}
"""Image pairs per split in the real challenge archives."""

REAL_POST_BUILDINGS = {
    "train": (117_426, 14_980, 14_161, 13_227, 2_993),
    "test": (41_427, 4_798, 3_850, 3_775, 1_012),
    "hold": (37_971, 6_338, 4_605, 4_223, 1_255),
    "tier3": (116_209, 10_744, 7_288, 10_335, 8_752),
}
"""Post-disaster buildings per split and damage class (in :data:`SUBTYPES` order)."""


def _dumps(doc: object) -> bytes:
    try:
        import orjson
    except ImportError:
        return json.dumps(doc).encode()
    return orjson.dumps(doc)


def _ring_wkt(xs: list[float], ys: list[float]) -> str:
    return "POLYGON ((" + ", ".join([f"{x!r} {y!r}" for x, y in zip(xs, ys, strict=True)]) + "))"


def _tree_chunk(
    args: tuple[str, str, int, int, int, float, int, int],
) -> SynthStats:
    """Write label pairs ``start`` to ``stop`` of one split (runs in a worker process)."""
    import numpy as np

    root, split, start, stop, total, mean, seed, size = args
    stats = SynthStats()
    rng = np.random.default_rng([seed, start, total, zlib.crc32(split.encode())])
    disasters = TIER3_DISASTERS if split == "tier3" else TIER1_DISASTERS
    names = sorted(disasters)
    classes = REAL_POST_BUILDINGS.get(split, (1, 1, 1, 1, 1))
    probs = np.array(classes, dtype=float) / sum(classes)
    labels_dir = Path(root) / split / "labels"
    labels_dir.mkdir(parents=True, exist_ok=True)
    # Building counts per image are heavy tailed: many empty images, a few with hundreds.
    shape = 0.7
    counts = np.minimum(rng.negative_binomial(shape, shape / (shape + mean), stop - start), 2000)
    for i, n in zip(range(start, stop), counts.tolist(), strict=True):
        disaster = names[i % len(names)]
        image_id = i * 3 + int(rng.integers(0, 3))
        stats.pairs[split] += 1
        stats.pairs_by_disaster[(split, disaster)] += 1
        lon0, lat0 = float(rng.uniform(-120, 120)), float(rng.uniform(-40, 50))
        uids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n)]
        vertices = rng.integers(4, 12, n)
        centres = rng.uniform(30, size - 30, (n, 2))
        xy_wkt, ll_wkt = [], []
        for (cx, cy), k in zip(centres.tolist(), vertices.tolist(), strict=True):
            # around the centre, gaps under half a turn: a simple (valid) polygon
            angles = (np.arange(k) + rng.uniform(0, 0.8, k)) * (2 * np.pi / k)
            radii = rng.uniform(4, 25, k)
            xs = cx + radii * np.cos(angles)
            ys = cy + radii * np.sin(angles)
            xs, ys = np.append(xs, xs[0]), np.append(ys, ys[0])
            xy_wkt.append(_ring_wkt(xs.tolist(), ys.tolist()))
            ll_wkt.append(_ring_wkt((lon0 + xs * 3e-6).tolist(), (lat0 - ys * 3e-6).tolist()))
        post_types = [SUBTYPES[j] for j in rng.choice(len(SUBTYPES), n, p=probs).tolist()]
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        capture = f"2018-{month:02d}-{day:02d}T16:04:11.000Z"
        for phase in ("pre", "post"):
            stem = f"{disaster}_{image_id:08d}_{phase}_disaster"
            xy, lng_lat = [], []
            for j in range(n):
                props: dict[str, object] = {"feature_type": "building"}
                if phase == "post":
                    props["subtype"] = post_types[j]
                props["uid"] = uids[j]
                lng_lat.append({"properties": props, "wkt": ll_wkt[j]})
                xy.append({"properties": dict(props), "wkt": xy_wkt[j]})
                stats.buildings[(split, phase, post_types[j] if phase == "post" else "")] += 1
                stats.buildings_by_disaster[
                    (split, disaster, phase, post_types[j] if phase == "post" else "")
                ] += 1
            doc = {
                "features": {"lng_lat": lng_lat, "xy": xy},
                "metadata": {
                    "sensor": "WORLDVIEW02",
                    "provider_asset_type": "WORLDVIEW02",
                    "gsd": float(rng.uniform(1.8, 2.6)),
                    "capture_date": capture,
                    "off_nadir_angle": float(rng.uniform(5, 35)),
                    "pan_resolution": float(rng.uniform(0.4, 0.7)),
                    "sun_azimuth": float(rng.uniform(100, 200)),
                    "sun_elevation": float(rng.uniform(20, 70)),
                    "target_azimuth": float(rng.uniform(0, 360)),
                    "disaster": disaster,
                    "disaster_type": disasters[disaster],
                    "catalog_id": rng.bytes(8).hex(),
                    "original_width": size,
                    "original_height": size,
                    "width": size,
                    "height": size,
                    "id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
                    "img_name": f"{stem}.png",
                },
            }
            (labels_dir / f"{stem}.json").write_bytes(_dumps(doc))
            stats.members[split] += 1
    return stats


def write_label_tree(
    root: str | Path,
    pairs: dict[str, int] | None = None,
    *,
    seed: int = 0,
    buildings_per_pair: float | dict[str, float] | None = None,
    image_size: int = 1024,
    workers: int | None = None,
    chunk: int = 500,
) -> SynthStats:
    """Write label JSON files straight into ``root/<split>/labels/`` (no images, no archive).

    ``pairs`` defaults to the real split sizes (:data:`REAL_PAIRS`, 22,068 label files);
    ``buildings_per_pair`` defaults to the real per-split means (about 425,000 buildings
    per phase in all), with damage classes drawn in the real per-split proportions.
    Polygons carry 5-12 vertices written at full float precision in both ``lng_lat`` and
    ``xy``, so files have realistic sizes (tens of KB on average).  Work is spread over
    ``workers`` processes (default: all CPUs).  Deterministic for a given ``seed``.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor

    pairs = dict(REAL_PAIRS if pairs is None else pairs)
    means: dict[str, float] = {}
    for split in pairs:
        if isinstance(buildings_per_pair, dict):
            means[split] = buildings_per_pair.get(split, 36.0)
        elif buildings_per_pair is not None:
            means[split] = buildings_per_pair
        else:
            real = REAL_POST_BUILDINGS.get(split)
            means[split] = sum(real) / REAL_PAIRS[split] if real else 36.0
    jobs = [
        (str(root), split, start, min(start + chunk, n), n, means[split], seed, image_size)
        for split, n in pairs.items()
        for start in range(0, n, chunk)
    ]
    stats = SynthStats()
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            stats.merge(_tree_chunk(job))
        return stats
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_tree_chunk, jobs):
            stats.merge(part)
    return stats
