"""``xview2 targets``, ``pixels``, ``split``, ``layout``, ``stats --bands`` and ``ingest
--targets --layout``: exit codes, the final ``--json`` report, usage errors; and the
promise end to end: from signed links to a folder torchgeo's XView2 reads, tier3 in train."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import xview2_ingest as x
from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.demo.synth import make_split_archive

PAIRS = {"train": 6, "test": 3, "tier3": 4}
SIZE = 64
PIXEL_COLUMNS = ["px_0", "px_1", "px_2", "px_3", "px_4", "px_other"]
Contract = Callable[[Path, str], list[dict[str, str]]]


def xview2(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xview2_ingest.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )


def final(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The last ``--json`` line: exactly one, final, carrying the command's exit code."""
    parsed = [json.loads(line) for line in run.stdout.splitlines()]
    assert parsed, run.stderr
    assert [p.get("final") for p in parsed].count(True) == 1 and parsed[-1]["final"] is True
    assert parsed[-1]["exit_code"] == run.returncode, (parsed[-1], run.stderr)
    return parsed[-1]


def report(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    last = final(run)
    assert last["type"] == "report", last
    return last["report"]


def usage_error(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 2, run.stderr
    last = final(run)
    assert last["type"] == "error", last
    assert "Traceback" not in run.stderr
    return last["error"]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train and test with their targets, tier3 without (as the real archives)."""
    root = tmp_path_factory.mktemp("ready-archives")
    for split, n in PAIRS.items():
        make_split_archive(
            root, split, n, targets=split != "tier3", image_size=SIZE, label_size=SIZE
        )
    return root


@pytest.fixture(scope="module")
def catalog_file(archives: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ready-catalog") / "catalog.json"
    entries = {
        p.name: {"size": p.stat().st_size, "sha1": hashlib.sha1(p.read_bytes()).hexdigest()}
        for p in archives.iterdir()
    }
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(scope="module")
def tree(archives: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archives extracted and indexed, nothing made yet."""
    dest = tmp_path_factory.mktemp("ready-tree") / "dest"
    for archive in sorted(archives.iterdir()):
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    assert x.build_index(dest).ok
    return dest


@pytest.fixture()
def dest(tree: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "dest"
    shutil.copytree(tree, copy)
    return copy


@pytest.fixture()
def ready_server(archives: Path) -> Iterator[SignedLinkServer]:
    with SignedLinkServer(archives, faults=Faults()) as srv:
        yield srv


def target_values(path: Path) -> set[int]:
    with Image.open(path) as image:
        return {int(v) for v in np.unique(np.asarray(image))}


def stems(folder: Path) -> set[str]:
    return {p.name.rsplit("_", 2)[0] for p in folder.iterdir()}


# ------------------------------------------------------------------------ the promise


def test_ingest_from_signed_links_to_a_torchgeo_folder_with_tier3_in_train(
    ready_server: SignedLinkServer,
    archives: Path,
    catalog_file: Path,
    tmp_path: Path,
    torchgeo_contract: Contract,
) -> None:
    links = tmp_path / "links.txt"
    links.write_text(ready_server.links_text())
    dest = tmp_path / "xview2"
    command = ["ingest", "--links", str(links), "--targets", "--layout", "torchgeo",
               "--include", "tier3", "--dest", str(dest), "--catalog", str(catalog_file)]  # fmt: skip
    run = xview2(*command, "--json")
    assert run.returncode == 0, run.stderr
    stages = report(run)
    assert [k for k in stages if k not in ("dest", "ok", "exit_code")] == [
        "download", "extract", "targets", "index", "pixels", "layout"
    ]  # fmt: skip
    assert {f["status"] for f in stages["download"]["files"]} == {"verified"}
    assert [s["split"] for s in stages["targets"]["splits"]] == ["tier3"]
    assert stages["layout"]["pairs"] == {
        "train": PAIRS["train"] + PAIRS["tier3"],
        "test": PAIRS["test"],
    }
    assert "Signature" not in run.stdout + run.stderr

    # torchgeo's XView2 contract, tier3 in train
    root = dest / "layouts" / "torchgeo"
    train = torchgeo_contract(root, "train")
    assert len(train) == PAIRS["train"] + PAIRS["tier3"]
    assert len(torchgeo_contract(root, "test")) == PAIRS["test"]
    train_keys = {Path(p["image1"]).name.rsplit("_", 2)[0] for p in train}
    assert stems(dest / "tier3" / "images") <= train_keys
    assert len(stems(dest / "tier3" / "images")) == PAIRS["tier3"]

    # every tier3 label has its target, with values of the official convention only
    labels = sorted((dest / "tier3" / "labels").glob("*.json"))
    made = sorted((dest / "tier3" / "targets").glob("*_target.png"))
    assert [p.name.removesuffix("_target.png") for p in made] == [p.stem for p in labels]
    for path in made:
        assert target_values(path) <= {0, 1, 2, 3, 4}, path.name
        with Image.open(path) as image:
            assert image.size == (SIZE, SIZE) and image.mode == "L"

    # the index has the pixel columns filled, equal to the targets' own counts
    images = pq.read_table(dest / "index" / "images.parquet").to_pylist()
    assert len(images) == 2 * sum(PAIRS.values())
    for row in images:
        counts = [row[c] for c in PIXEL_COLUMNS]
        assert None not in counts and sum(counts) == SIZE * SIZE, row["image_id"]
        if row["split"] == "tier3":
            with Image.open(dest / row["target_path"]) as image:
                pixels = np.asarray(image)
            assert counts[:5] == [int((pixels == v).sum()) for v in range(5)]

    # a rerun downloads nothing, makes no target again, and keeps the layout as it is
    again = report(xview2(*command, "--json"))
    assert {f["status"] for f in again["download"]["files"]} == {"skipped"}
    assert again["targets"]["splits"][0]["made"] == 0
    assert again["targets"]["splits"][0]["unchanged"] == 2 * PAIRS["tier3"]
    assert again["layout"]["linked"] == 0 and again["layout"]["unchanged"] > 0


def test_ingest_with_a_val_split_puts_val_pairs_in_val(
    ready_server: SignedLinkServer, catalog_file: Path, tmp_path: Path
) -> None:
    links = tmp_path / "links.txt"
    links.write_text(ready_server.links_text())
    dest = tmp_path / "xview2"
    run = xview2("ingest", "--links", str(links), "--dest", str(dest), "--catalog",
                 str(catalog_file), "--targets", "--layout", "images-masks", "--include",
                 "tier3", "--val-fraction", "0.3", "--seed", "7", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    stages = report(run)
    counts = stages["splits"]["counts"]
    assert counts["val"] >= 1 and counts["train"] + counts["val"] == 10
    assert stages["layout"]["pairs"]["val"] == counts["val"]
    val = (dest / "layouts" / "images-masks" / "val.txt").read_text().split()
    assert len(val) == 2 * counts["val"]


def test_a_failed_stage_stops_the_later_ones(
    archives: Path, catalog_for: Callable[[Path], x.Catalog], tmp_path: Path
) -> None:
    """A label that cannot be read fails the targets stage: index, pixels and layout do
    not run, and say so (None); the exit code is the failure's."""
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(archives / "train_images_labels_targets.tar.gz", served)
    with (
        tarfile.open(archives / "tier3.tar.gz") as src,
        tarfile.open(served / "tier3.tar.gz", "w:gz") as out,
    ):
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member) if member.isfile() else None)
        bad = tarfile.TarInfo("tier3/labels/joplin-tornado_00000999_post_disaster.json")
        bad.size = 1
        out.addfile(bad, io.BytesIO(b"{"))
    with SignedLinkServer(served, faults=Faults()) as srv:
        result = x.ingest(
            [srv.url_for(p.name) for p in sorted(served.iterdir())],
            tmp_path / "dest",
            targets=True,
            layout="torchgeo",
            include=["tier3"],
            catalog=catalog_for(served),
        )
    assert not result.ok and result.exit_code == 1
    assert result.stages["extract"] is not None and result.stages["extract"].ok
    assert result.stages["targets"] is not None and not result.stages["targets"].ok
    assert [result.stages[s] for s in ("index", "pixels", "layout")] == [None, None, None]
    assert result.to_dict()["index"] is None
    assert not (tmp_path / "dest" / "index" / "images.parquet").exists()
    assert not (tmp_path / "dest" / "layouts").exists()


def test_ingest_refuses_contradictory_flags_before_downloading(tmp_path: Path) -> None:
    dest = str(tmp_path / "d")
    url = "https://127.0.0.1:1/train_images_labels_targets.tar.gz"
    for flags, said in (
        (["--targets", "--from-archives"], "extracted files"),
        (["--layout", "torchgeo", "--no-extract"], "extracted files"),
        (["--include", "hold"], "invalid choice"),
        (["--layout", "coco"], "invalid choice"),
        (["--val-fold", "1"], "--folds"),
        (["--folds", "3", "--val-fold", "3"], "0 to 2"),
        (["--val-fraction", "0.1", "--folds", "3"], "not allowed"),
        (["--val-fraction", "1"], "between 0 and 1"),
    ):
        error = usage_error(xview2("ingest", url, "--dest", dest, "--json", *flags))
        assert said in error["message"], (flags, error)
    assert not (tmp_path / "d").exists()
    with pytest.raises(x.XView2Error) as raised:
        x.ingest([url], tmp_path / "d", include=["hold"])
    assert raised.value.exit_code == 2


# ------------------------------------------------------------------------ one step each


def test_targets_command(dest: Path) -> None:
    run = xview2("targets", "--dest", str(dest), "--json")
    assert run.returncode == 0, run.stderr
    made = report(run)
    assert made["rule"] == "u0-b0" and [s["split"] for s in made["splits"]] == ["tier3"]
    assert made["splits"][0]["made"] == 2 * PAIRS["tier3"]
    assert "targets (u0-b0)" in xview2("targets", "--dest", str(dest)).stderr  # the summary

    run = xview2("targets", "--dest", str(dest), "--split", "train", "--split", "tier3",
                 "--force", "--unclassified", "255", "--border", "1", "--separate",
                 "--workers", "1", "--json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    again = report(run)
    assert again["rule"] == "u255-b1" and again["separate"] is True
    assert [s["made"] for s in again["splits"]] == [2 * PAIRS["train"], 2 * PAIRS["tier3"]]
    assert len(list((dest / "tier3" / "localization").iterdir())) == PAIRS["tier3"]
    for path in (dest / "tier3" / "targets").iterdir():
        assert target_values(path) <= {0, 1, 2, 3, 4, 255}

    for flags, said in (
        (["--unclassified", "256"], "0-255"),
        (["--border", "-1"], "at least 0"),
        (["--split", "val"], "invalid choice"),
        (["--workers", "0"], "at least 1"),
    ):
        error = usage_error(xview2("targets", "--dest", str(dest), "--json", *flags))
        assert said in error["message"], flags
    missing = usage_error(xview2("targets", "--dest", str(dest / "nope"), "--json"))
    assert "does not exist" in missing["message"]


def test_targets_without_labels_is_a_failure_with_the_fix(tmp_path: Path) -> None:
    run = xview2("targets", "--dest", str(tmp_path), "--split", "tier3", "--json")
    assert run.returncode == 1
    error = final(run)["error"]
    assert "no label files" in error["message"] and "xview2 extract" in error["hint"]


def test_pixels_command(dest: Path) -> None:
    run = xview2("pixels", "--dest", str(dest), "--json")
    assert run.returncode == 0, run.stderr
    before = report(run)
    assert before["without_target"] == 2 * PAIRS["tier3"]  # tier3 ships no targets
    assert xview2("targets", "--dest", str(dest)).returncode == 0
    after = report(xview2("pixels", "--dest", str(dest), "--json", "--workers", "1"))
    assert after["without_target"] == 0 and after["from_record"] == 2 * PAIRS["tier3"]
    assert after["decoded"] == 2 * (PAIRS["train"] + PAIRS["test"])
    images = pq.read_table(dest / "index" / "images.parquet", columns=PIXEL_COLUMNS)
    assert all(v is not None for col in images.columns for v in col.to_pylist())

    nowhere = empty_folder(dest)
    run = xview2("pixels", "--dest", str(nowhere), "--json")
    assert run.returncode == 1 and "xview2 index" in final(run)["error"]["hint"]


def empty_folder(dest: Path) -> Path:
    empty = dest.parent / "empty"
    empty.mkdir()
    return empty


def test_split_command(dest: Path) -> None:
    args = ["split", "--dest", str(dest), "--json"]
    run = xview2(*args, "--val-fraction", "0.25", "--include", "tier3", "--seed", "3")
    assert run.returncode == 0, run.stderr
    first = report(run)
    assert first["counts"]["train"] + first["counts"]["val"] == PAIRS["train"] + PAIRS["tier3"]
    assert first["seed"] == 3 and first["val_fraction"] == 0.25
    lists = dest / "index" / "splits"
    val = (lists / "val.txt").read_text()
    again = report(xview2(*args, "--val-fraction", "0.25", "--include", "tier3", "--seed", "3"))
    assert again["counts"] == first["counts"] and (lists / "val.txt").read_text() == val

    folds = report(xview2(*args, "--folds", "3", "--val-fold", "1", "--include", "test"))
    assert set(folds["fold_counts"]) == {"0", "1", "2"}
    assert folds["counts"]["test"] == PAIRS["test"]
    assert sum(folds["fold_counts"].values()) == PAIRS["train"]
    assert (lists / "fold2.txt").exists()
    assert report(xview2(*args))["val_fraction"] == 0.1  # the default

    for flags, said in (
        (["--val-fraction", "1.5"], "between 0 and 1"),
        (["--folds", "1"], "at least 2"),
        (["--val-fraction", "0.1", "--folds", "3"], "not allowed"),
        (["--val-fold", "1"], "--folds"),
        (["--folds", "2", "--val-fold", "2"], "0 to 1"),
        (["--include", "hold"], "invalid choice"),
    ):
        assert said in usage_error(xview2(*args, *flags))["message"], flags

    empty = empty_folder(dest)
    run = xview2("split", "--dest", str(empty), "--json")
    assert run.returncode == 1 and "xview2 index" in final(run)["error"]["hint"]


def test_layout_command(dest: Path, torchgeo_contract: Contract) -> None:
    args = ["layout", "torchgeo", "--dest", str(dest), "--include", "tier3", "--json"]
    run = xview2(*args)
    assert run.returncode == 1  # tier3 has no targets yet: its pairs are left out
    left_out = report(run)
    assert len(left_out["incomplete"]) == PAIRS["tier3"]
    assert "xview2 targets" in xview2(*args[:-1]).stderr

    run = xview2(*args[:-1], "--val")
    assert run.returncode == 1 and "xview2 split" in run.stderr  # no splits yet

    assert xview2("targets", "--dest", str(dest)).returncode == 0
    assert xview2("split", "--dest", str(dest), "--include", "tier3", "--val-fraction",
                  "0.3").returncode == 0  # fmt: skip
    run = xview2(*args, "--val")
    assert run.returncode == 0, run.stderr
    laid = report(run)
    assert laid["pairs"]["train"] + laid["pairs"]["val"] == PAIRS["train"] + PAIRS["tier3"]
    root = dest / "layouts" / "torchgeo"
    assert len(torchgeo_contract(root, "train")) == laid["pairs"]["train"]
    assert len(list((root / "val" / "images").iterdir())) == 2 * laid["pairs"]["val"]

    run = xview2("layout", "images-masks", "--dest", str(dest), "--out", "for/unet", "--json")
    assert run.returncode == 0, run.stderr
    assert report(run)["out"] == "for/unet"
    assert (dest / "for" / "unet" / "train.txt").exists()

    assert "invalid choice" in usage_error(xview2("layout", "coco", "--dest", str(dest),
                                                  "--json"))["message"]  # fmt: skip
    assert "refusing" in usage_error(xview2("layout", "torchgeo", "--dest", str(dest),
                                            "--out", "train", "--json"))["message"]  # fmt: skip


def test_stats_bands(dest: Path) -> None:
    run = xview2("stats", "--dest", str(dest), "--bands", "--json")
    assert run.returncode == 0, run.stderr
    bands = report(run)["bands"]
    assert set(bands) == {"train", "test", "tier3"}
    for split in bands.values():
        assert [b["band"] for b in split] == ["red", "green", "blue"]
        assert all(b["pixels"] > 0 and b["std"] >= 0 for b in split)
    assert (dest / "index" / "bands.json").exists()
    table = xview2("stats", "--dest", str(dest), "--bands")
    assert table.returncode == 0 and "image bands" in table.stdout
    assert "image bands" not in xview2("stats", "--dest", str(dest)).stdout
    assert "bands" not in report(xview2("stats", "--dest", str(dest), "--json"))
    csv = xview2("stats", "--dest", str(dest), "--bands", "--format", "csv")
    assert csv.returncode == 2 and "CSV has no band columns" in csv.stderr and not csv.stdout


def test_the_api_exports_one_entry_for_each_step() -> None:
    from xview2_ingest import prepare

    for name in ("make_targets", "count_pixels", "make_splits", "make_layout"):
        assert getattr(x, name) is getattr(prepare, name)
        assert name in x.__all__
    for name in ("TargetsReport", "PixelsReport", "SplitsReport", "LayoutReport"):
        assert getattr(x, name) is getattr(prepare, name) and name in x.__all__


def test_every_report_satisfies_the_report_protocol(dest: Path) -> None:
    made = [
        x.make_targets(dest, workers=1),
        x.count_pixels(dest, workers=1),
        x.make_splits(dest, include_tier3=True),
        x.make_layout(dest, "torchgeo", include_tier3=True),
        x.dataset_stats(dest, bands=True),
    ]
    for result in made:
        assert isinstance(result, x.Report), type(result)
        assert result.ok and result.exit_code == 0 and result.summary()
        json.dumps(result.to_dict())
    assert made[-1].bands is not None and set(made[-1].bands) == {"train", "test", "tier3"}
    assert os.path.exists(dest / "layouts" / "torchgeo" / "layout.json")
