"""Dataset statistics from the index, checked against what the generator wrote."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from xview2_ingest.demo.synth import SUBTYPES, SynthStats, write_label_tree
from xview2_ingest.errors import XView2Error
from xview2_ingest.index import DAMAGE_CLASSES, build_index, compute_stats
from xview2_ingest.index.stats import IndexMissingError
from xview2_ingest.stores import open_store

PAIRS = {"train": 12, "test": 5, "hold": 5, "tier3": 9}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthStats]:
    root = tmp_path_factory.mktemp("stats")
    stats = write_label_tree(root, PAIRS, buildings_per_pair=9, workers=1, seed=11)
    report = build_index(root, workers=1)
    assert report.ok
    return root, stats


def expected_damage(
    stats: SynthStats, split: str | None = None, disaster: str | None = None
) -> dict[str, int]:
    out = dict.fromkeys(DAMAGE_CLASSES, 0)
    for (s, d, phase, sub), n in stats.buildings_by_disaster.items():
        if phase == "post" and split in (None, s) and disaster in (None, d):
            out[sub] += n
    return out


def test_stats_match_the_generator(indexed: tuple[Path, SynthStats]) -> None:
    root, stats = indexed
    result = compute_stats(root)
    assert result.layout == "challenge"
    assert result.splits == ["train", "test", "hold", "tier3"]
    assert result.pairs == dict(stats.pairs)
    assert result.pairs_by_disaster == dict(stats.pairs_by_disaster)
    for split in PAIRS:
        assert result.damage_by_split[split] == expected_damage(stats, split)
    for disaster, damage in result.damage_by_disaster.items():
        assert damage == expected_damage(stats, disaster=disaster)
    total = result.total()
    assert total.pairs == sum(PAIRS.values()) and total.images == 2 * total.pairs
    assert total.buildings_pre == sum(
        n for (_, phase, _), n in stats.buildings.items() if phase == "pre"
    )
    assert total.buildings_post == total.buildings_pre  # the same footprints, both phases
    assert sum(total.shares.values()) == pytest.approx(1.0)
    assert total.shares["no-damage"] == pytest.approx(
        total.damage["no-damage"] / total.buildings_post
    )
    assert tuple(DAMAGE_CLASSES) == SUBTYPES


def test_csv_and_json(indexed: tuple[Path, SynthStats]) -> None:
    root, stats = indexed
    result = compute_stats(root)
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    groups = len(stats.pairs_by_disaster)
    assert len(rows) == groups + len(PAIRS) + len(result.disasters) + 1
    total = rows[-1]
    assert (total["split"], total["disaster"]) == ("all", "all")
    assert int(total["pairs"]) == sum(PAIRS.values())
    assert int(total["destroyed"]) == expected_damage(stats)["destroyed"]
    assert sum(
        float(total[f"share_{c.replace('-', '_')}"]) for c in DAMAGE_CLASSES
    ) == pytest.approx(1.0, abs=1e-5)
    train = next(r for r in rows if r["split"] == "train" and r["disaster"] == "all")
    assert int(train["pairs"]) == PAIRS["train"]
    assert int(train["buildings_post"]) == sum(expected_damage(stats, "train").values())

    doc = json.loads(result.to_json())
    assert doc["damage_classes"] == list(DAMAGE_CLASSES)
    assert doc["total"]["pairs"] == sum(PAIRS.values())
    assert doc["splits"]["tier3"]["pairs"] == PAIRS["tier3"]
    assert doc["splits"]["tier3"]["damage"] == expected_damage(stats, "tier3")
    some = next(iter(doc["disasters"]))
    assert doc["disasters"][some]["damage"] == expected_damage(stats, disaster=some)
    for split, info in doc["splits"].items():
        assert sum(d["pairs"] for d in info["disasters"].values()) == PAIRS[split]


def test_rich_tables(indexed: tuple[Path, SynthStats]) -> None:
    root, _ = indexed
    result = compute_stats(root)
    console = Console(record=True, width=220, color_system=None)
    console.print(result.to_rich())
    text = console.export_text()
    for word in ("train", "tier3", "woolsey-fire", "destroyed", "total"):
        assert word in text
    assert f"{result.total().buildings_post:,}" in text


def test_png_chart(indexed: tuple[Path, SynthStats], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    root, _ = indexed
    result = compute_stats(root)
    where = result.write_png(tmp_path / "charts" / "stats.png")
    data = Path(where).read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600 and height > 300
    assert data.endswith(b"IEND\xaeB`\x82")
    # into the destination's store, next to the index
    where = result.write_png("index/stats.png", store=open_store(str(root)))
    assert (root / "index" / "stats.png").read_bytes().startswith(PNG_SIGNATURE)
    assert where.endswith("index/stats.png")


def test_png_without_matplotlib_names_the_extra(
    indexed: tuple[Path, SynthStats], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = indexed
    result = compute_stats(root)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(XView2Error, match=r"pip install 'xview2-ingest\[plot\]'"):
        result.to_png()


def test_missing_index(tmp_path: Path) -> None:
    write_label_tree(tmp_path, {"test": 3}, buildings_per_pair=2, workers=1)
    with pytest.raises(IndexMissingError, match="no index"):
        compute_stats(tmp_path)
    result = compute_stats(tmp_path, build_if_missing=True)
    assert result.pairs == {"test": 3}
    assert (tmp_path / "index" / "images.parquet").is_file()


def test_geotiff_tree_is_not_counted_twice(tmp_path: Path) -> None:
    stats = write_label_tree(tmp_path, {"test": 4}, buildings_per_pair=3, workers=1)
    geo = tmp_path / "geotiffs" / "test" / "labels"
    geo.mkdir(parents=True)
    for p in (tmp_path / "test" / "labels").iterdir():
        os.link(p, geo / p.name)
    report = build_index(tmp_path, workers=1)
    assert report.images == 16 and report.pairs == 8  # both layouts indexed
    result = compute_stats(tmp_path)
    assert result.layout == "challenge" and result.pairs == {"test": 4}
    assert result.damage_by_split["test"] == expected_damage(stats, "test")
    # a GeoTIFF-only destination gets its statistics from the GeoTIFF tree
    only = tmp_path / "only"
    (only / "geotiffs" / "tier1").mkdir(parents=True)
    os.rename(geo, only / "geotiffs" / "tier1" / "labels")
    build_index(only, workers=1)
    result = compute_stats(only)
    assert result.layout == "geotiff" and result.pairs == {"tier1": 4}


def test_stats_on_s3(
    s3: Any, bucket: str, moto_endpoint: str, indexed: tuple[Path, SynthStats]
) -> None:
    root, stats = indexed
    for name in ("index/images.parquet",):
        s3.put_object(Bucket=bucket, Key=f"xv/{name}", Body=(root / name).read_bytes())
    result = compute_stats(f"s3://{bucket}/xv", endpoint_url=moto_endpoint)
    assert result.pairs == dict(stats.pairs)
    assert result.dest == f"s3://{bucket}/xv"
