"""Targets, pixel counts and band statistics on synthetic archives in the real layout
(tier3 without targets, un-classified buildings), locally and on moto's S3 server."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tarfile
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from xview2_ingest.demo.synth import label, make_split_archive
from xview2_ingest.events import Event
from xview2_ingest.index import build_index, compute_stats
from xview2_ingest.prepare import band_stats, count_pixels, make_targets, targets
from xview2_ingest.prepare.raster import decode_png, encode_png

SIZE = 128
DAMAGE = {"no-damage": 1, "minor-damage": 2, "major-damage": 3, "destroyed": 4}


def extract_tree(root: Path, pairs: dict[str, int], seed: int = 0) -> Path:
    """Synthetic archives of ``pairs`` per split, tier3 without targets, unpacked."""
    dest = root / "dest"
    for split, n in pairs.items():
        archive = make_split_archive(
            root / "archives",
            split,
            n,
            seed=seed,
            targets=split != "tier3",
            label_size=SIZE,
            max_buildings=10,
        )
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return dest


def star(rng: random.Random) -> list[tuple[float, float]]:
    """A random simple polygon (star-shaped around its centre), closed."""
    k = rng.randint(3, 11)
    cx, cy = rng.uniform(26, SIZE - 26), rng.uniform(26, SIZE - 26)
    angles = sorted(rng.uniform(0, 6.283) for _ in range(k))
    pts = [
        (cx + r * float(np.cos(a)), cy + r * float(np.sin(a)))
        for a, r in zip(angles, [rng.uniform(2, 24) for _ in range(k)], strict=True)
    ]
    return [*pts, pts[0]]


def wkt(points: list[tuple[float, float]]) -> str:
    return "POLYGON ((" + ", ".join(f"{x!r} {y!r}" for x, y in points) + "))"


def irregular_tier3(dest: Path, seed: int, pairs: int = 12) -> None:
    """tier3 labels whose buildings are random slanted polygons, overlapping at times."""
    rng = random.Random(seed)
    folder = dest / "tier3" / "labels"
    folder.mkdir(parents=True, exist_ok=True)
    subtypes = [*DAMAGE, "un-classified"]
    for i in range(pairs):
        n = rng.randint(0, 14)
        uids = [f"u{i}-{j}" for j in range(n)]
        polygons = [star(rng) for _ in range(n)]
        for phase in ("pre", "post"):
            kinds = [rng.choice(subtypes) if phase == "post" else None for _ in uids]
            doc = label(
                rng,
                "joplin-tornado",
                "tornado",
                i,
                phase,
                list(zip(uids, kinds, strict=True)),
                SIZE,
            )
            for feature, points in zip(doc["features"]["xy"], polygons, strict=True):  # type: ignore[index]
                feature["wkt"] = wkt(points)
            name = f"joplin-tornado_{i:08d}_{phase}_disaster.json"
            (folder / name).write_text(json.dumps(doc))


def expected_values(doc: dict, phase: str, unclassified: int = 0) -> list[int]:
    return [
        1 if phase == "pre" else DAMAGE.get(f["properties"].get("subtype"), unclassified)
        for f in doc["features"]["xy"]
    ]


def ring(text: str) -> np.ndarray:
    body = text[text.index("((") + 2 : text.rindex("))")]
    return np.array([[float(v) for v in p.split()] for p in body.split(",")])


def plain_opencv(doc: dict, phase: str) -> np.ndarray:
    """The per-image loop public code uses: fillPoly on rounded vertices, label order."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    for f, value in zip(doc["features"]["xy"], expected_values(doc, phase), strict=True):
        cv2.fillPoly(mask, [np.rint(ring(f["wkt"])).astype(np.int32)], value)
    return mask


def plain_pil(doc: dict, phase: str) -> tuple[np.ndarray, np.ndarray]:
    """PIL's polygon fill on the same rounded vertices, and each pixel's distance to the
    nearest polygon edge (the band where the two rasterisers may differ)."""
    image = Image.new("L", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    dist = np.full((SIZE, SIZE), np.inf)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for f, value in zip(doc["features"]["xy"], expected_values(doc, phase), strict=True):
        pts = np.rint(ring(f["wkt"]))
        draw.polygon([(int(x), int(y)) for x, y in pts], fill=value)
        for (x0, y0), (x1, y1) in pairwise(pts):
            dx, dy = x1 - x0, y1 - y0
            t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
            dist = np.minimum(dist, np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy)))
    return np.asarray(image), dist


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train and test with shipped targets, tier3 without; targets not yet made."""
    return extract_tree(tmp_path_factory.mktemp("tree"), {"train": 8, "test": 4, "tier3": 10})


@pytest.fixture()
def fresh(tree: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "dest"
    shutil.copytree(tree, dest)
    return dest


def test_tier3_targets_match_opencv_exactly_and_pil_off_the_edges(tmp_path: Path) -> None:
    seed = int(os.environ.get("XVIEW2_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (replay with XVIEW2_TEST_SEED={seed})")
    dest = tmp_path / "dest"
    irregular_tier3(dest, seed)
    report = make_targets(dest, workers=2)
    assert report.ok and [s.split for s in report.splits] == ["tier3"]
    assert report.made == 24
    seen_unclassified = differing = building = 0
    for path in sorted((dest / "tier3" / "labels").iterdir()):
        doc = json.loads(path.read_text())
        phase = "post" if "_post_" in path.name else "pre"
        made = cv2.imread(
            str(dest / "tier3" / "targets" / f"{path.stem}_target.png"), cv2.IMREAD_UNCHANGED
        )
        assert made.dtype == np.uint8 and made.shape == (SIZE, SIZE)
        allowed = {0, 1} if phase == "pre" else {0, 1, 2, 3, 4}
        assert set(np.unique(made).tolist()) <= allowed
        assert np.array_equal(made, plain_opencv(doc, phase)), path.name
        pil, dist = plain_pil(doc, phase)
        interior = dist > 1.0
        assert np.array_equal(made[interior], pil[interior]), path.name
        differing += int((made != pil).sum())
        building += int((made > 0).sum())
        seen_unclassified += sum(
            f["properties"].get("subtype") == "un-classified" for f in doc["features"]["xy"]
        )
    assert seen_unclassified > 0
    assert differing < 0.1 * max(building, 1)  # the edge band is thin


def test_rerun_skips_what_is_made_and_remakes_what_changed(fresh: Path) -> None:
    first = make_targets(fresh, workers=1)
    assert first.made == 20 and first.splits[0].split == "tier3"
    again = make_targets(fresh, workers=1)
    assert again.made == 0 and again.splits[0].unchanged == 20
    labels = sorted((fresh / "tier3" / "labels").iterdir())
    labels[0].write_bytes(labels[0].read_bytes() + b"\n")  # new label bytes
    (fresh / "tier3" / "targets" / f"{labels[1].stem}_target.png").unlink()
    (fresh / "tier3" / "targets" / f"{labels[2].stem}_target.png").write_bytes(b"broken")
    third = make_targets(fresh, workers=1)
    assert third.made == 3 and third.splits[0].unchanged == 17
    other_rule = make_targets(fresh, unclassified=255, workers=1)
    assert other_rule.made == 20
    record = json.loads((fresh / "index" / "targets" / "tier3.json").read_text())["targets"]
    assert len(record) == 20 and {e["rule"] for e in record.values()} == {"u255-b0"}


def test_interrupted_run_keeps_finished_targets(fresh: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(targets, "TASK_LABELS", 4)
    batches = 0

    def stop_after_two(event: Event) -> None:
        nonlocal batches
        if event.kind == "bytes":
            batches += 1
            if batches == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_targets(fresh, workers=1, progress=stop_after_two)
    resumed = make_targets(fresh, workers=1)
    assert resumed.splits[0].unchanged == 8 and resumed.made == 12


def test_shipped_targets_are_kept_unless_forced(fresh: Path) -> None:
    shipped = (fresh / "train" / "targets").iterdir().__next__()
    before = shipped.read_bytes()
    report = make_targets(fresh, splits=["train"], workers=1)
    assert report.made == 0 and report.splits[0].shipped == 16
    assert shipped.read_bytes() == before
    forced = make_targets(fresh, splits=["train"], force=True, workers=1)
    assert forced.made == 16 and shipped.read_bytes() != before
    assert decode_png(shipped.read_bytes()).shape == (SIZE, SIZE)


def test_options_unclassified_border_and_separate_masks(fresh: Path) -> None:
    plain = make_targets(fresh, workers=1)
    base = {p.name: decode_png(p.read_bytes()) for p in (fresh / "tier3/targets").iterdir()}
    report = make_targets(fresh, unclassified=255, border=2, separate=True, workers=1)
    assert plain.ok and report.ok and report.made == 20
    ignored = shrunk = 0
    for name, before in base.items():
        after = decode_png((fresh / "tier3/targets" / name).read_bytes())
        assert set(np.unique(after).tolist()) <= {0, 1, 2, 3, 4, 255}
        ignored += int((after == 255).sum())
        assert (after > 0).sum() <= (before > 0).sum() + (after == 255).sum()
        shrunk += int((before > 0).sum() - ((after > 0) & (after != 255)).sum())
        loc = fresh / "tier3/localization" / name
        assert loc.exists() == ("_post_" in name)
        if loc.exists():
            footprint = decode_png(loc.read_bytes())
            assert set(np.unique(footprint).tolist()) <= {0, 1}
            assert np.array_equal(footprint > 0, after > 0)
    assert ignored > 0 and shrunk > 0
    with pytest.raises(Exception, match="unclassified"):
        make_targets(fresh, unclassified=300)


def test_pixel_counts_in_the_index_equal_the_pngs(fresh: Path) -> None:
    make_targets(fresh, workers=2)
    build_index(fresh, workers=1)
    report = count_pixels(fresh, workers=2)
    assert report.ok and report.from_record == 20 and report.decoded == 24
    rows = pq.read_table(fresh / "index" / "images.parquet").to_pylist()
    assert len(rows) == 44
    for row in rows:
        mask = decode_png((fresh / row["target_path"]).read_bytes())
        counts = [int((mask == v).sum()) for v in range(5)]
        assert [row[f"px_{v}"] for v in range(5)] == counts, row["target_path"]
        assert row["px_other"] == mask.size - sum(counts)


def test_band_stats_are_exact_and_reused(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    folder = tmp_path / "train" / "images"
    folder.mkdir(parents=True)
    pixels = []
    for i in range(5):
        rgb = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
        pixels.append(rgb.reshape(-1, 3))
        _, png = cv2.imencode(".png", rgb[:, :, ::-1])  # OpenCV writes BGR
        (folder / f"joplin-tornado_{i:08d}_pre_disaster.png").write_bytes(png.tobytes())
    everything = np.concatenate(pixels).astype(np.float64)
    report = band_stats(tmp_path, workers=2)
    assert report.ok and not report.reused
    for k, band in enumerate(report.splits["train"]):
        assert band.band == ("red", "green", "blue")[k]
        assert band.mean == pytest.approx(everything[:, k].mean(), abs=1e-9)
        assert band.std == pytest.approx(everything[:, k].std(), abs=1e-9)
    assert band_stats(tmp_path).reused


def test_stats_with_bands(fresh: Path) -> None:
    build_index(fresh, workers=1)
    stats = compute_stats(fresh, bands=True)
    assert stats.bands is not None and set(stats.bands) == {"train", "test", "tier3"}
    assert stats.to_dict()["bands"]["train"][0]["band"] == "red"


def test_png_writer_round_trips() -> None:
    mask = np.random.default_rng(3).integers(0, 6, (33, 47), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(mask)), mask)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(mask)))), mask)


def upload(s3, bucket: str, root: Path, prefix: str) -> None:  # type: ignore[no-untyped-def]
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(root).as_posix()}"
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def test_targets_and_pixels_on_s3(tree: Path, s3, bucket: str, moto_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    upload(s3, bucket, tree, "xv")
    dest = f"s3://{bucket}/xv"
    report = make_targets(dest, endpoint_url=moto_endpoint, workers=2)
    assert report.ok and report.made == 20
    keys = {
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="xv/tier3/targets/")["Contents"]
    }
    assert len(keys) == 20
    again = make_targets(dest, endpoint_url=moto_endpoint, workers=1)
    assert again.made == 0 and again.splits[0].unchanged == 20
    build_index(dest, endpoint_url=moto_endpoint, workers=1)
    pixels = count_pixels(dest, endpoint_url=moto_endpoint, workers=2)
    assert pixels.ok and pixels.from_record == 20 and pixels.decoded == 24
    for key in sorted(keys)[:4]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        mask = decode_png(body)
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 4}
