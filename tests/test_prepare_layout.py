"""Layouts for training code: torchgeo's exact file contract, images-masks, on a folder
(hard links) and on S3 (server-side copies); one real torchgeo run where it is installed."""

from __future__ import annotations

import glob
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from xview2_ingest.demo.synth import make_split_archive
from xview2_ingest.index import build_index
from xview2_ingest.prepare import make_layout, make_splits, make_targets


@pytest.fixture(scope="module")
def ready(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/test with shipped targets, tier3 with made targets, indexed, split."""
    root = tmp_path_factory.mktemp("layout")
    dest = root / "dest"
    for split, n in (("train", 10), ("test", 4), ("tier3", 6)):
        archive = make_split_archive(
            root / "archives", split, n, targets=split != "tier3", image_size=64, label_size=64
        )
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    assert make_targets(dest, workers=1).ok
    build_index(dest, workers=1)
    make_splits(dest, val_fraction=0.2, include_tier3=True)
    return dest


@pytest.fixture()
def fresh(ready: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "dest"
    shutil.copytree(ready, dest)
    return dest


def torchgeo_files(root: Path, split: str) -> list[dict[str, str]]:
    """What torchgeo's XView2 reads (datasets/xview.py: _verify, _load_files), checked
    without torchgeo: both split folders must hold images/ and targets/; pairs come from
    the image names; every pair needs two images and two targets."""
    for directory in ("train", "test"):
        for sub in ("images", "targets"):
            assert os.path.exists(os.path.join(root, directory, sub)), (directory, sub)
    image_root = os.path.join(root, split, "images")
    mask_root = os.path.join(root, split, "targets")
    names = {
        "_".join(os.path.basename(f).split("_")[:-2]) for f in glob.glob(f"{image_root}/*.png")
    }
    files = []
    for name in sorted(names):
        pair = {
            "image1": os.path.join(image_root, f"{name}_pre_disaster.png"),
            "image2": os.path.join(image_root, f"{name}_post_disaster.png"),
            "mask1": os.path.join(mask_root, f"{name}_pre_disaster_target.png"),
            "mask2": os.path.join(mask_root, f"{name}_post_disaster_target.png"),
        }
        assert all(os.path.isfile(p) for p in pair.values()), pair
        files.append(pair)
    return files


def test_torchgeo_layout_merges_tier3_without_copying(fresh: Path) -> None:
    report = make_layout(fresh, "torchgeo", include_tier3=True)
    assert report.ok and report.pairs == {"train": 16, "test": 4}
    root = fresh / "layouts" / "torchgeo"
    train = torchgeo_files(root, "train")
    assert len(train) == 16 and len(torchgeo_files(root, "test")) == 4
    tier3_pairs = {f.name.rsplit("_", 2)[0] for f in (fresh / "tier3" / "images").iterdir()}
    keys = {os.path.basename(p["image1"]).rsplit("_", 2)[0] for p in train}
    assert len(tier3_pairs) == 6 and tier3_pairs <= keys
    merged = sorted(os.listdir(root / "train" / "targets"))
    made = sorted(os.listdir(fresh / "tier3" / "targets"))
    assert set(made) <= set(merged)
    for name in made:
        assert os.path.samefile(
            root / "train" / "targets" / name, fresh / "tier3" / "targets" / name
        )
    assert report.linked == 80 and report.copied == 0
    again = make_layout(fresh, "torchgeo", include_tier3=True)
    assert again.linked == 0 and again.unchanged == 80


def test_torchgeo_layout_with_val_moves_pairs_and_prunes(fresh: Path) -> None:
    make_layout(fresh, "torchgeo", include_tier3=True)
    report = make_layout(fresh, "torchgeo", include_tier3=True, val=True)
    root = fresh / "layouts" / "torchgeo"
    assert report.ok and report.pairs["val"] >= 1
    assert report.pairs["train"] + report.pairs["val"] == 16
    assert report.removed == 4 * report.pairs["val"]
    val = {os.path.basename(p) for p in glob.glob(f"{root}/val/images/*.png")}
    train = {os.path.basename(p) for p in glob.glob(f"{root}/train/images/*.png")}
    assert val and not val & train
    assert len(torchgeo_files(root, "train")) == report.pairs["train"]
    assert (root / "layout.json").exists()


def test_images_masks_layout(fresh: Path) -> None:
    report = make_layout(fresh, "images-masks", include_tier3=True, val=True)
    root = fresh / "layouts" / "images-masks"
    assert report.ok
    for split in ("train", "val", "test"):
        stems = (root / f"{split}.txt").read_text().split()
        assert len(stems) == 2 * report.pairs[split]
        assert sorted(p.stem for p in (root / split / "images").iterdir()) == sorted(stems)
        assert sorted(p.stem for p in (root / split / "masks").iterdir()) == sorted(stems)


def test_missing_tier3_targets_are_reported(fresh: Path) -> None:
    shutil.rmtree(fresh / "tier3" / "targets")
    report = make_layout(fresh, "torchgeo", include_tier3=True)
    assert not report.ok and report.exit_code == 1
    assert len(report.incomplete) == 6 and "targets/" in report.incomplete[0][1]
    assert not (fresh / "layouts" / "torchgeo" / "layout.json").exists()


def test_layout_on_s3_uses_server_side_copies(
    ready: Path, s3, bucket: str, moto_endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    for path in sorted(ready.rglob("*")):
        if path.is_file() and path.relative_to(ready).parts[0] in ("train", "test", "tier3"):
            s3.put_object(
                Bucket=bucket,
                Key=f"xv/{path.relative_to(ready).as_posix()}",
                Body=path.read_bytes(),
            )
    report = make_layout(
        f"s3://{bucket}/xv", "torchgeo", include_tier3=True, endpoint_url=moto_endpoint
    )
    assert report.ok and report.linked == 80
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="xv/layouts/torchgeo/train/targets/")
    assert listed["KeyCount"] == 32


def test_torchgeo_loads_the_merged_layout(fresh: Path) -> None:
    """A real torchgeo run (skipped where torchgeo is not installed, as in CI)."""
    xview = pytest.importorskip("torchgeo.datasets.xview")
    make_layout(fresh, "torchgeo", include_tier3=True)
    dataset = xview.XView2(root=str(fresh / "layouts" / "torchgeo"), split="train")
    assert len(dataset) == 16
    names = [os.path.basename(f["image1"]) for f in dataset.files]
    assert any(
        n.startswith(
            (
                "joplin",
                "lower-puna",
                "moore",
                "nepal",
                "pinery",
                "portugal",
                "sunda",
                "tuscaloosa",
                "woolsey",
            )
        )
        for n in names
    )
    for i in range(len(dataset)):  # torchgeo >= 0.8 returns the post target as the mask
        sample = dataset[i]
        assert tuple(sample["image"].shape) == (2, 3, 64, 64)
        assert sample["mask"].shape[-2:] == sample["image"].shape[-2:]
        assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 3, 4}
