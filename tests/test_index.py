"""The label index: real label files and archives, a real S3 server (moto), no mocks."""

from __future__ import annotations

import glob
import gzip
import io
import itertools
import json
import os
import pickle
import struct
import sys
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xview2_ingest.archive import CorruptArchiveError, decode
from xview2_ingest.demo.synth import SynthStats, write_label_tree
from xview2_ingest.errors import ExitCode
from xview2_ingest.events import Event
from xview2_ingest.index import (
    BUILDINGS_FILE,
    BUILDINGS_SCHEMA,
    IMAGES_FILE,
    IMAGES_SCHEMA,
    REPORT_FILE,
    NoLabelsError,
    build_index,
)
from xview2_ingest.index import build as build_module
from xview2_ingest.index import tables as tables_module
from xview2_ingest.index.geometry import areas, parse_polygons, wkb
from xview2_ingest.index.tables import build_batch

PAIRS = {"train": 14, "test": 6, "hold": 4, "tier3": 10}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthStats]:
    """A label-only tree in the extracted layout (index written by the tests that need it)."""
    root = tmp_path_factory.mktemp("tree")
    stats = write_label_tree(root, PAIRS, buildings_per_pair=7, workers=1, seed=3)
    return root, stats


@pytest.fixture(scope="module")
def indexed(
    tree: tuple[Path, SynthStats], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, SynthStats]:
    src, stats = tree
    root = tmp_path_factory.mktemp("indexed")
    for split in PAIRS:
        (root / split).mkdir()
        os.symlink(src / split / "labels", root / split / "labels")
    report = build_index(root, workers=1)
    assert report.ok, report.skipped
    return root, stats


def read(root: Path, name: str) -> pa.Table:
    return pq.read_table(root / name)


def wkb_rings(data: bytes) -> list[list[tuple[float, float]]]:
    """Decode a little-endian WKB Polygon (what the index writes) without GEOS."""
    order, kind, nrings = struct.unpack_from("<BII", data, 0)
    assert (order, kind) == (1, 3)
    pos, rings = 9, []
    for _ in range(nrings):
        (n,) = struct.unpack_from("<I", data, pos)
        values = struct.unpack_from(f"<{2 * n}d", data, pos + 4)
        rings.append(list(zip(values[0::2], values[1::2], strict=True)))
        pos += 4 + 16 * n
    assert pos == len(data)
    return rings


def wkt_ring(text: str) -> list[tuple[float, float]]:
    body = text.removeprefix("POLYGON ((").removesuffix("))")
    return [(float(x), float(y)) for x, y in (p.split() for p in body.split(", "))]


def shoelace(ring: list[tuple[float, float]]) -> float:
    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in itertools.pairwise(ring))) / 2


# ---------------------------------------------------------------------------- tree


def test_index_from_extracted_tree_matches_generator(indexed: tuple[Path, SynthStats]) -> None:
    root, stats = indexed
    images, buildings = read(root, IMAGES_FILE), read(root, BUILDINGS_FILE)
    assert images.schema.remove_metadata() == IMAGES_SCHEMA
    assert buildings.schema.remove_metadata() == BUILDINGS_SCHEMA
    assert images.num_rows == 2 * sum(PAIRS.values())
    rows = images.to_pylist()
    per_split = Counter((r["split"], r["phase"]) for r in rows)
    for split, n in PAIRS.items():
        assert per_split[(split, "pre")] == per_split[(split, "post")] == n
    # buildings per split, phase and damage class, as written
    got = Counter(
        (b["split"], b["phase"], b["subtype"] or "")
        for b in buildings.select(["split", "phase", "subtype"]).to_pylist()
    )
    assert got == +stats.buildings
    # image-level counts agree with the building rows
    assert sum(r["n_buildings"] for r in rows) == buildings.num_rows
    assert sum(r["n_destroyed"] for r in rows) == sum(
        n for (_, phase, sub), n in stats.buildings.items() if sub == "destroyed"
    )
    # pairing key, phase and paths follow the archive layout (relative to DEST)
    r = rows[0]
    stem = f"{r['image_id']}_{r['phase']}_disaster"
    assert r["label_path"] == f"{r['split']}/labels/{stem}.json"
    assert r["image_path"] == f"{r['split']}/images/{stem}.png"
    assert r["target_path"] == f"{r['split']}/targets/{stem}_target.png"
    assert r["image_id"].startswith(r["disaster"] + "_") and len(r["image_id"].split("_")[1]) == 8
    assert r["layout"] == "challenge" and r["archive"] is None
    # typed metadata
    assert isinstance(r["gsd"], float) and isinstance(r["width"], int)
    assert r["capture_date"].tzinfo is not None and r["capture_date"].year == 2018
    assert r["disaster_type"] and r["sensor"] == "WORLDVIEW02"
    report = json.loads((root / REPORT_FILE).read_text())
    assert report["images"] == images.num_rows and report["buildings"] == buildings.num_rows
    assert report["pairs"] == sum(PAIRS.values())


def test_geometry_columns_match_the_label_polygons(indexed: tuple[Path, SynthStats]) -> None:
    root, _ = indexed
    buildings = read(root, BUILDINGS_FILE).to_pylist()
    images = {
        (r["split"], r["image_id"], r["phase"]): r for r in read(root, IMAGES_FILE).to_pylist()
    }
    checked = 0
    for b in buildings[:: max(1, len(buildings) // 40)]:
        label = images[(b["split"], b["image_id"], b["phase"])]["label_path"]
        doc = json.loads((root / label).read_text())
        geo = {f["properties"]["uid"]: f["wkt"] for f in doc["features"]["lng_lat"]}
        pix = {f["properties"]["uid"]: f["wkt"] for f in doc["features"]["xy"]}
        assert b["pixel_wkt"] == pix[b["uid"]]
        assert wkb_rings(b["geometry"]) == [wkt_ring(geo[b["uid"]])]  # bit-exact coordinates
        assert b["area_px"] == pytest.approx(shoelace(wkt_ring(pix[b["uid"]])), rel=1e-12)
        assert (b["subtype"] is None) == (b["phase"] == "pre")
        checked += 1
    assert checked > 20


def test_geoparquet_metadata(indexed: tuple[Path, SynthStats]) -> None:
    root, _ = indexed
    path = root / BUILDINGS_FILE
    meta = pq.read_schema(path).metadata
    geo = json.loads(meta[b"geo"])
    assert geo["version"] == "1.0.0"
    assert geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB"
    assert column["geometry_types"] == ["Polygon"]
    assert "crs" not in column  # omitted: OGC:CRS84 by definition
    xs, ys = [], []
    for data in pq.read_table(path, columns=["geometry"]).column(0).to_pylist():
        for x, y in wkb_rings(data)[0]:
            xs.append(x)
            ys.append(y)
    assert column["bbox"] == [min(xs), min(ys), max(xs), max(ys)]
    # the images file carries no geo metadata and reads back typed
    assert b"geo" not in (pq.read_schema(root / IMAGES_FILE).metadata or {})


def test_geoparquet_reads_as_geometry_in_geopandas(indexed: tuple[Path, SynthStats]) -> None:
    gpd = pytest.importorskip("geopandas")
    root, _ = indexed
    frame = gpd.read_parquet(root / BUILDINGS_FILE)
    assert frame.crs is not None and frame.crs.to_string() in ("OGC:CRS84", "EPSG:4326")
    assert set(frame.geometry.geom_type) == {"Polygon"}
    assert frame.geometry.is_valid.all()
    assert len(frame) == pq.read_metadata(root / BUILDINGS_FILE).num_rows


def test_geoparquet_reads_as_geometry_in_duckdb(indexed: tuple[Path, SynthStats]) -> None:
    duckdb = pytest.importorskip("duckdb")
    root, _ = indexed
    con = duckdb.connect()
    path = str(root / BUILDINGS_FILE).replace("'", "''")
    spatial = True
    try:
        con.execute("LOAD spatial")
    except duckdb.Error:
        spatial = False
    kinds = dict(
        con.execute(f"DESCRIBE SELECT * FROM '{path}'").fetchall()[i][:2]
        for i in range(len(BUILDINGS_SCHEMA))
    )
    if not kinds["geometry"].upper().startswith("GEOMETRY"):
        pytest.skip("this DuckDB reads GeoParquet as geometry only with the spatial extension")
    assert kinds["area_px"] == "DOUBLE"
    if spatial:
        (kind,) = con.execute(f"SELECT DISTINCT ST_GeometryType(geometry) FROM '{path}'").fetchone()
        assert str(kind).upper() == "POLYGON"


@pytest.mark.parametrize(
    ("start_method", "shared_memory"),
    [("fork", True), ("spawn", False)],
    ids=["fork-shared-memory", "spawn-pipe"],
)
def test_worker_processes_give_the_same_index(
    tree: tuple[Path, SynthStats],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    start_method: str,
    shared_memory: bool,
) -> None:
    if start_method == "fork" and sys.platform != "linux":
        pytest.skip("workers are forked on Linux only")
    src, _ = tree
    parallel_root, serial_root = tmp_path / "parallel", tmp_path / "serial"
    for root in (parallel_root, serial_root):
        for split in ("train", "tier3"):
            (root / split).mkdir(parents=True)
            os.symlink(src / split / "labels", root / split / "labels")
    monkeypatch.setattr(build_module, "BATCH_FILES", 7)  # several batches
    monkeypatch.setattr(build_module, "_start_method", lambda: start_method)
    if not shared_memory:
        monkeypatch.setattr(build_module, "SHARED_MEMORY", str(tmp_path / "no-such-folder"))
    events: list[Event] = []
    spills_before = set(_spill_dirs())
    parallel = build_index(parallel_root, workers=2, progress=events.append)
    serial = build_index(serial_root, workers=1)
    assert parallel.ok and serial.ok
    assert parallel.images == serial.images and parallel.buildings == serial.buildings
    for name in (IMAGES_FILE, BUILDINGS_FILE):
        assert read(parallel_root, name).equals(read(serial_root, name))
    kinds = [e.kind for e in events]
    assert kinds[0] == "stage" and "started" in kinds and kinds.count("published") == 2
    total = next(e.total for e in events if e.kind == "started")
    assert sum(e.done for e in events if e.kind == "bytes") == total == parallel.label_bytes
    assert set(_spill_dirs()) <= spills_before  # this run's spill folder is gone


def _spill_dirs() -> list[str]:
    """Index spill folders in shared memory (other runs on the machine may own some)."""
    if not os.path.isdir(build_module.SHARED_MEMORY):
        return []
    return [p for p in os.listdir(build_module.SHARED_MEMORY) if "xview2-index" in p]


def test_batches_cross_processes_through_shared_memory_or_the_pipe(
    tree: tuple[Path, SynthStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, _ = tree
    names = sorted((src / "test" / "labels").iterdir())[:6]
    batch = build_batch([(f"test/labels/{p.name}", p.read_bytes(), None) for p in names])
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tables_module, "SPILL_DIR", str(spill))
    mapped = pickle.loads(pickle.dumps(batch))  # through a file in the spill folder
    assert mapped.buildings.equals(batch.buildings) and not list(spill.iterdir())
    monkeypatch.setattr(tables_module, "SPILL_DIR", str(tmp_path / "gone"))
    piped = pickle.loads(pickle.dumps(batch))  # the folder is gone: in the pickle itself
    assert piped.buildings.equals(batch.buildings)
    assert piped.images == batch.images and piped.images_table().num_rows == len(names)


def test_rebuild_replaces_the_index(indexed: tuple[Path, SynthStats]) -> None:
    root, _ = indexed
    before = read(root, BUILDINGS_FILE)
    report = build_index(root, workers=1)
    assert report.ok and read(root, BUILDINGS_FILE).equals(before)
    assert not list((root / ".xview2" / "tmp").iterdir())  # staging cleaned up


# ------------------------------------------------------------------------- archives


def test_index_from_archives_without_extracting(
    dataset: tuple[Path, SynthStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, stats = dataset
    names = []
    for archive in src.iterdir():
        # saved as .tar by some: still gzip inside, detected
        name = archive.name.removesuffix(".gz") if archive.name.startswith("test") else archive.name
        os.link(archive, tmp_path / name)
        names.append(name)
    report = build_index(tmp_path, from_archives=True, workers=1)
    assert report.ok, report.skipped
    assert report.source == "archives"
    assert report.pairs == sum(stats.pairs.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".xview2", "index", *names]
    )  # nothing extracted
    images = read(tmp_path, IMAGES_FILE).to_pylist()
    assert {r["archive"] for r in images} == set(names)
    assert "test_images_labels_targets.tar" in names
    assert Counter(r["split"] for r in images if r["phase"] == "post") == stats.pairs
    got = Counter(
        (b["split"], b["phase"], b["subtype"] or "")
        for b in read(tmp_path, BUILDINGS_FILE).to_pylist()
    )
    assert got == +stats.buildings
    assert report.summary().startswith(f"indexed {len(images)} images")
    # the same through worker processes (label contents shipped to them in batches) and
    # with the standard library's inflater instead of ISA-L's
    before = {name: read(tmp_path, name) for name in (IMAGES_FILE, BUILDINGS_FILE)}
    monkeypatch.setattr(build_module, "BATCH_FILES", 9)
    monkeypatch.setattr(decode, "DECODER", "zlib")
    again = build_index(tmp_path, from_archives=True, workers=2)
    assert again.ok and again.label_bytes == report.label_bytes
    for name, table in before.items():
        assert read(tmp_path, name).equals(table)


def test_uncompressed_tar_archive(dataset: tuple[Path, SynthStats], tmp_path: Path) -> None:
    archive = next(p for p in dataset[0].iterdir() if p.name.startswith("train"))
    (tmp_path / "train_images_labels_targets.tar").write_bytes(
        gzip.decompress(archive.read_bytes())
    )
    report = build_index(tmp_path, from_archives=True, workers=1)
    assert report.ok and report.pairs == dataset[1].pairs["train"]


@pytest.mark.parametrize("decoder", list(decode.DECODERS))
def test_corrupt_archive_is_a_clear_error(
    dataset: tuple[Path, SynthStats], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    monkeypatch.setattr(decode, "DECODER", decoder)
    archive = next(p for p in dataset[0].iterdir() if p.name.startswith("train"))
    data = archive.read_bytes()
    (tmp_path / archive.name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArchiveError, match="nothing was indexed") as info:
        build_index(tmp_path, from_archives=True, workers=1)
    assert info.value.file == archive.name
    assert not (tmp_path / IMAGES_FILE).exists()


def test_torchgeo_layout_contract(dataset: tuple[Path, SynthStats], tmp_path: Path) -> None:
    """Extract as torchgeo would, pair files by torchgeo's rule, check every pair."""
    src, stats = dataset
    for archive in sorted(src.iterdir()):
        with tarfile.open(archive) as tar:
            tar.extractall(tmp_path, filter="data")
    for split in ("train", "test"):
        image_root = os.path.join(tmp_path, split, "images")
        mask_root = os.path.join(tmp_path, split, "targets")
        images = glob.glob(os.path.join(image_root, "*.png"))
        basenames = sorted({"_".join(os.path.basename(f).split("_")[:-2]) for f in images})
        assert len(basenames) == stats.pairs[split]
        for name in basenames:
            for path in (
                os.path.join(image_root, f"{name}_pre_disaster.png"),
                os.path.join(image_root, f"{name}_post_disaster.png"),
                os.path.join(mask_root, f"{name}_pre_disaster_target.png"),
                os.path.join(mask_root, f"{name}_post_disaster_target.png"),
            ):
                assert os.path.isfile(path), path
    # the index built from that tree points at exactly those files, keyed the same way
    report = build_index(tmp_path, workers=1)
    assert report.ok and report.pairs == sum(stats.pairs.values())
    for row in read(tmp_path, IMAGES_FILE).to_pylist():
        stem = os.path.basename(row["image_path"])
        assert "_".join(stem.split("_")[:-2]) == row["image_id"]
        assert (tmp_path / row["image_path"]).is_file()
        assert (tmp_path / row["target_path"]).is_file()


# ------------------------------------------------------------------------ malformed

GOOD_WKT = "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))"


def label_doc(uid_pairs: list[tuple[object, str, str]], **meta: object) -> dict[str, object]:
    """A label with buildings given as (uid, lng_lat wkt, xy wkt)."""

    def feats(i: int) -> list[dict[str, object]]:
        return [
            {
                "properties": {"feature_type": "building", "subtype": "destroyed", "uid": u},
                "wkt": w[i],
            }
            for u, *w in uid_pairs
        ]

    metadata = {
        "gsd": 2.0,
        "capture_date": "2018-01-02T03:04:05Z",
        "width": 1024,
        "disaster": "socal-fire",
        "disaster_type": "fire",
    } | meta
    return {"features": {"lng_lat": feats(0), "xy": feats(1)}, "metadata": metadata}


def test_malformed_labels_are_reported_and_skipped(
    tree: tuple[Path, SynthStats], tmp_path: Path
) -> None:
    src, stats = tree
    labels = tmp_path / "test" / "labels"
    labels.mkdir(parents=True)
    good = sorted((src / "test" / "labels").iterdir())
    for p in good:
        os.symlink(p, labels / p.name)
    bad = {
        "socal-fire_00900001_post_disaster.json": b'{"features": {"xy": [',
        "socal-fire_00900002_post_disaster.json": json.dumps({"metadata": {}}).encode(),
        "socal-fire_00900003_post_disaster.json": json.dumps(
            label_doc([("a", GOOD_WKT, "POLYGON ((0 0, 1 1")])
        ).encode(),
        "socal-fire_00900004_post_disaster.json": json.dumps(
            label_doc([("a", "POLYGON ((0 0, 1 0, 1 1, 0 1))", GOOD_WKT)])
        ).encode(),
        "socal-fire_00900005_post_disaster.json": json.dumps(
            label_doc([("a", GOOD_WKT, GOOD_WKT)], gsd="wide")
        ).encode(),
        "socal-fire_00900006_post_disaster.json": json.dumps(
            {
                "features": {
                    "lng_lat": [{"properties": {"uid": "a"}, "wkt": GOOD_WKT}],
                    "xy": [{"properties": {"uid": "b"}, "wkt": GOOD_WKT}],
                },
                "metadata": {},
            }
        ).encode(),
        "socal-fire_00900007_post_disaster.json": json.dumps(
            {
                "features": {"lng_lat": [{"wkt": GOOD_WKT}], "xy": [{"wkt": GOOD_WKT}]},
                "metadata": {},
            }
        ).encode(),
        "socal-fire_00900008_post_disaster.json": json.dumps(
            label_doc([(7, GOOD_WKT, GOOD_WKT)])
        ).encode(),
        "notes.json": b"{}",
    }
    for name, data in bad.items():
        (labels / name).write_bytes(data)
    (labels / "._socal-fire_00900001_post_disaster.json").write_bytes(b"\x00\x05\x16\x07")
    # odd but valid WKT goes through the slow path and is kept
    (labels / "socal-fire_00900009_post_disaster.json").write_text(
        json.dumps(
            label_doc(
                [
                    (
                        "h",
                        "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 4 2, 4 4, 2 2))",
                        "POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,4 2,4 4,2 2))",
                    ),
                    (
                        "m",
                        "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))",
                        GOOD_WKT,
                    ),
                ]
            )
        )
    )
    report = build_index(tmp_path, workers=1)
    reasons = {os.path.basename(f): r for f, r in report.skipped}
    assert set(reasons) == set(bad)
    assert "not valid JSON" in reasons["socal-fire_00900001_post_disaster.json"]
    assert "missing key 'features'" in reasons["socal-fire_00900002_post_disaster.json"]
    assert "bad WKT in features.xy" in reasons["socal-fire_00900003_post_disaster.json"]
    assert "not closed" in reasons["socal-fire_00900004_post_disaster.json"]
    assert "metadata.gsd is not a number" in reasons["socal-fire_00900005_post_disaster.json"]
    assert "do not pair by uid" in reasons["socal-fire_00900006_post_disaster.json"]
    assert "has no 'properties'" in reasons["socal-fire_00900007_post_disaster.json"]
    assert "uid is not a string" in reasons["socal-fire_00900008_post_disaster.json"]
    assert "file name does not follow" in reasons["notes.json"]
    assert not report.ok and report.exit_code == ExitCode.FAILURE
    assert f"{len(bad)} label file(s) skipped" in report.summary()
    # every good file is indexed, plus the odd-but-valid one
    assert report.images == len(good) + 1
    buildings = read(tmp_path, BUILDINGS_FILE)
    odd = {b["uid"]: b for b in buildings.to_pylist() if b["image_id"] == "socal-fire_00900009"}
    assert odd["h"]["area_px"] == pytest.approx(100 - 2)
    assert len(wkb_rings(odd["h"]["geometry"])) == 2
    assert odd["m"]["geometry"][:5] == struct.pack("<BI", 1, 6)  # MultiPolygon
    geo = json.loads(pq.read_schema(tmp_path / BUILDINGS_FILE).metadata[b"geo"])
    assert geo["columns"]["geometry"]["geometry_types"] == ["MultiPolygon", "Polygon"]
    index_json = json.loads((tmp_path / REPORT_FILE).read_text())
    assert len(index_json["skipped"]) == len(bad)
    assert stats  # the generator's own labels were all fine
    assert ExitCode.OK == 0


def test_wkt_fast_and_slow_paths_agree() -> None:
    rings = [f"POLYGON (({x} 0, {x + 3.5} 0, {x + 3.5} 2, {x} 2, {x} 0))" for x in range(50)]
    plain = parse_polygons(rings)
    assert not plain.errors and not plain.slow
    mixed = parse_polygons([*rings[:25], "POLYGON EMPTY", *rings[25:]])
    assert 25 in mixed.slow and not mixed.errors
    a, _, bounds_a = wkb(plain)
    b, types, bounds_b = wkb(mixed)
    assert a.to_pylist() == b.to_pylist()[:25] + b.to_pylist()[26:]
    assert b[25].as_py() == struct.pack("<BII", 1, 3, 0) and types == {"Polygon"}
    assert bounds_a == bounds_b == [0.0, 0.0, 52.5, 2.0]
    assert list(areas(plain)) == [7.0] * 50
    assert areas(mixed)[25] == 0.0
    bad = parse_polygons(
        ["POLYGON ((0 0, 1 0, 1 1, 0 0))", "POINT (1 2)", 3, "POLYGON Z ((0 0 0))"]
    )
    assert set(bad.errors) == {1, 2, 3}
    assert wkb(bad)[0].null_count == 3


# ------------------------------------------------------------------------------ S3


def test_index_on_s3_tree_and_archives(
    s3: Any,
    bucket: str,
    moto_endpoint: str,
    tree: tuple[Path, SynthStats],
    dataset: tuple[Path, SynthStats],
) -> None:
    src, stats = tree
    for split in ("test", "hold"):
        for p in (src / split / "labels").iterdir():
            s3.put_object(Bucket=bucket, Key=f"xv/{split}/labels/{p.name}", Body=p.read_bytes())
    dest = f"s3://{bucket}/xv"
    report = build_index(dest, endpoint_url=moto_endpoint, workers=1)
    assert report.ok and report.images == 2 * (PAIRS["test"] + PAIRS["hold"])
    assert report.outputs == [BUILDINGS_FILE, IMAGES_FILE, REPORT_FILE]
    body = s3.get_object(Bucket=bucket, Key=f"xv/{BUILDINGS_FILE}")["Body"].read()
    table = pq.read_table(io.BytesIO(body))
    assert json.loads(table.schema.metadata[b"geo"])["primary_column"] == "geometry"
    got = Counter(
        (b["split"], b["phase"], b["subtype"] or "")
        for b in table.select(["split", "phase", "subtype"]).to_pylist()
    )
    assert got == +Counter({k: v for k, v in stats.buildings.items() if k[0] in ("test", "hold")})
    # archives in the bucket, streamed without extracting
    archives_dest = f"s3://{bucket}/arch"
    for archive in dataset[0].iterdir():
        s3.upload_file(str(archive), bucket, f"arch/{archive.name}")
    report = build_index(archives_dest, endpoint_url=moto_endpoint, from_archives=True, workers=1)
    assert report.ok and report.pairs == sum(dataset[1].pairs.values())
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="arch/")["Contents"]}
    assert not any("/labels/" in k for k in keys)


def test_no_labels_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoLabelsError, match="no label files"):
        build_index(tmp_path, workers=1)
    with pytest.raises(NoLabelsError, match="no xView2 archive"):
        build_index(tmp_path, from_archives=True, workers=1)
