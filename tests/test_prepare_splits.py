"""Reproducible, stratified train/val splits and folds from the index."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from xview2_ingest.demo.synth import write_label_tree
from xview2_ingest.index import build_index
from xview2_ingest.prepare import make_splits
from xview2_ingest.prepare.splits import index_pairs
from xview2_ingest.stores import open_store


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labels")
    write_label_tree(
        root, {"train": 260, "tier3": 140, "test": 30}, buildings_per_pair=6, workers=1
    )
    build_index(root, workers=1)
    return root


def rows(root: Path) -> list[dict]:
    return pq.read_table(root / "index" / "splits.parquet").to_pylist()


def lists(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "index" / "splits").iterdir())}


def test_folds_are_disjoint_covering_and_stratified(indexed: Path) -> None:
    report = make_splits(indexed, folds=5, seed=3, include_tier3=True)
    assert report.ok
    got = rows(indexed)
    pairs = index_pairs(open_store(str(indexed)))
    pool = {(p.source, p.image_id) for p in pairs if p.source in ("train", "tier3")}
    keys = [(r["source"], r["image_id"]) for r in got]
    assert len(keys) == len(set(keys)) and set(keys) == pool  # disjoint and covering
    assert {r["split"] for r in got if r["fold"] == 0} == {"val"}
    assert {r["split"] for r in got if r["fold"] != 0} == {"train"}
    per_disaster: dict[str, Counter[int]] = defaultdict(Counter)
    per_stratum: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for r in got:
        per_disaster[r["disaster"]][r["fold"]] += 1
        per_stratum[(r["disaster"], r["stratum"])][r["fold"]] += 1
    assert len(per_disaster) == 19
    for disaster, folds in per_disaster.items():
        counts = [folds.get(k, 0) for k in range(5)]
        assert max(counts) - min(counts) <= 1, disaster
        if sum(counts) >= 5:
            assert min(counts) >= 1, f"{disaster} missing from a fold"
    for stratum, folds in per_stratum.items():
        counts = [folds.get(k, 0) for k in range(5)]
        assert max(counts) - min(counts) <= 1, stratum
    sizes = Counter(r["fold"] for r in got)
    assert max(sizes.values()) - min(sizes.values()) <= 1
    fold_lists = lists(indexed)
    assert sum(fold_lists[f"fold{k}.txt"].count(b"\n") for k in range(5)) == len(pool)


def test_val_fraction_per_disaster(indexed: Path) -> None:
    report = make_splits(indexed, val_fraction=0.2, seed=1)
    got = rows(indexed)
    assert {r["source"] for r in got} == {"train"} and all(r["fold"] is None for r in got)
    by_disaster: dict[str, Counter[str]] = defaultdict(Counter)
    for r in got:
        by_disaster[r["disaster"]][r["split"]] += 1
    for disaster, counts in by_disaster.items():
        n = counts["train"] + counts["val"]
        assert int(n * 0.2) <= counts["val"] <= int(n * 0.2) + 1, disaster
    assert report.disasters_in_val == report.disasters == 10
    val_list = (indexed / "index" / "splits" / "val.txt").read_text().split()
    assert sorted(val_list) == sorted(f"train/{r['image_id']}" for r in got if r["split"] == "val")


def test_deterministic_across_runs_seeds_and_hash_randomisation(indexed: Path) -> None:
    make_splits(indexed, folds=5, seed=11)
    assert (indexed / "index" / "splits" / "fold4.txt").exists()
    make_splits(indexed, folds=4, seed=11, include_tier3=True, include_test=True)
    first = lists(indexed)
    assert b"test/" in first["test.txt"]
    make_splits(indexed, folds=4, seed=11, include_tier3=True, include_test=True)
    assert lists(indexed) == first
    code = (
        "from xview2_ingest.prepare import make_splits; import sys; "
        "make_splits(sys.argv[1], folds=4, seed=11, include_tier3=True, include_test=True)"
    )
    for hash_seed in ("1", "98765"):
        subprocess.run(
            [sys.executable, "-c", code, str(indexed)],
            check=True,
            env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"},
        )
        assert lists(indexed) == first
    make_splits(indexed, folds=4, seed=12, include_tier3=True, include_test=True)
    assert lists(indexed) != first
    assert not (indexed / "index" / "splits" / "fold4.txt").exists()  # stale list removed


def test_bad_arguments_are_usage_errors(indexed: Path) -> None:
    with pytest.raises(Exception, match="folds") as info:
        make_splits(indexed, folds=1)
    assert getattr(info.value, "exit_code", None) == 2
    with pytest.raises(Exception, match="val_fraction"):
        make_splits(indexed, val_fraction=1.5)
