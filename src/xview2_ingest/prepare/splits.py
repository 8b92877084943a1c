"""``make_splits``: reproducible train/val (and K-fold) assignments from the index.

The unit is an image pair (pre and post share a split).  Pairs are grouped by disaster;
within a disaster they are ordered by stratum (the set of damage classes present in the
post-disaster label, "none" for no building), and within a stratum shuffled by a
random generator seeded with ``(seed, disaster, stratum)`` as text, so the order depends
on nothing but the data and the seed (no hash randomisation, thread or file order).

* ``folds=K``: the disaster's ordered pairs are dealt round-robin to folds 0..K-1,
  starting at the fold that holds the fewest pairs so far.  Every fold then holds
  ``floor(n/K)`` or ``ceil(n/K)`` pairs of each disaster and of each stratum within it,
  so a disaster with at least K pairs is in every fold.  Fold ``val_fold`` is "val".
* otherwise ``val_fraction``: of each disaster's ordered pairs, pair ``i`` goes to
  "val" when ``floor((i + 1) * f + p)`` exceeds ``floor(i * f + p)`` (a systematic
  sample with a seeded phase ``p``), so each disaster gives ``floor(n * f)`` or one
  more pairs to val, spread over its strata.

Written to ``index/splits.parquet`` (``image_id``, ``source`` split, ``split``,
``fold``, ``disaster``, ``stratum``; one row per pair, ordered) and as plain lists
``index/splits/{train,val}.txt`` (and ``fold{k}.txt``) of ``{source}/{image_id}``.
Test and hold pairs keep their split (fold null) when ``include_test`` is set.
"""

from __future__ import annotations

import io
import logging
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ExitCode, UsageError, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..index.labels import COUNT_COLUMNS, DAMAGE_CLASSES
from ..settings import dest_setting
from ..stores import Store, open_store
from .pixels import read_images_table

log = logging.getLogger(__name__)

SPLITS_FILE = "index/splits.parquet"
LISTS_DIR = "index/splits"
SPLITS_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("fold", pa.int32()),
        ("disaster", pa.string()),
        ("stratum", pa.string()),
    ]
)


class NoPairsError(XView2Error):
    """The index holds no pair of the splits asked for."""


@dataclass(frozen=True)
class Pair:
    source: str
    image_id: str
    disaster: str
    stratum: str

    @property
    def key(self) -> str:
        return f"{self.source}/{self.image_id}"


@dataclass
class SplitsReport:
    """What :func:`make_splits` wrote."""

    dest: str
    seed: int
    folds: int | None
    val_fraction: float | None
    counts: dict[str, int] = field(default_factory=dict)
    """Pairs per split (train, val, and test/hold when included)."""
    fold_counts: dict[int, int] = field(default_factory=dict)
    disasters_in_val: int = 0
    disasters: int = 0
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    ok = True
    exit_code = int(ExitCode.OK)

    def summary(self) -> str:
        how = f"{self.folds} folds" if self.folds else f"val fraction {self.val_fraction}"
        counts = ", ".join(f"{n:,} {s}" for s, n in self.counts.items())
        return (
            f"splits ({how}, seed {self.seed}): {counts} pairs; {self.disasters_in_val} of "
            f"{self.disasters} disasters in val -> {self.dest.rstrip('/')}/{SPLITS_FILE}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "seed": self.seed,
            "folds": self.folds,
            "val_fraction": self.val_fraction,
            "counts": self.counts,
            "fold_counts": {str(k): v for k, v in self.fold_counts.items()},
            "disasters_in_val": self.disasters_in_val,
            "disasters": self.disasters,
            "outputs": self.outputs,
            "seconds": round(self.seconds, 3),
        }


def make_splits(
    dest: str | os.PathLike[str] | None = None,
    *,
    val_fraction: float = 0.1,
    folds: int | None = None,
    val_fold: int = 0,
    seed: int = 0,
    include_tier3: bool = False,
    include_test: bool = False,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
) -> SplitsReport:
    """Assign the train pairs (and tier3's, with ``include_tier3``) to train/val or folds.

    See the module docstring for the method.  ``include_test`` also lists the test and
    hold pairs under their own split.  Deterministic: the same index and arguments give
    the same files on any machine.
    """
    started = time.monotonic()
    emit = progress or no_progress
    if folds is not None and (folds < 2 or not 0 <= val_fold < folds):
        raise UsageError(f"folds must be 2 or more and val_fold within them (got {folds})")
    if folds is None and not 0 < val_fraction < 1:
        raise UsageError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    store = open_store(dest_setting(dest), endpoint_url=endpoint_url)
    pool_sources = ("train", "tier3") if include_tier3 else ("train",)
    pairs = index_pairs(store)
    pool = [p for p in pairs if p.source in pool_sources]
    if not pool:
        raise NoPairsError(
            f"no {' or '.join(pool_sources)} image pairs in the index at {store.url}",
            hint="extract and index the training archives first (xview2 index)",
        )
    emit(Event("stage", "split", detail=f"{len(pool):,} pairs"))
    assigned = assign(pool, seed=seed, folds=folds, val_fraction=val_fraction)
    rows: list[tuple[Pair, str, int | None]] = []
    for pair in pool:
        fold = assigned[pair.key]
        if folds is None:
            rows.append((pair, "val" if fold == 1 else "train", None))
        else:
            rows.append((pair, "val" if fold == val_fold else "train", fold))
    if include_test:
        rows += [(p, p.source, None) for p in pairs if p.source in ("test", "hold")]
    rows.sort(key=lambda r: (r[1] != "train", r[1], r[0].source, r[0].image_id))
    report = SplitsReport(store.url, seed, folds, None if folds else val_fraction)
    report.counts = dict(Counter(r[1] for r in rows))
    if folds:
        report.fold_counts = dict(sorted(Counter(r[2] for r in rows if r[2] is not None).items()))
    report.disasters = len({p.disaster for p in pool})
    report.disasters_in_val = len({r[0].disaster for r in rows if r[1] == "val"})
    _write(store, rows, report)
    report.seconds = time.monotonic() - started
    return report


def index_pairs(store: Store) -> list[Pair]:
    """Complete pre/post pairs of the challenge layout in the index, with their stratum."""
    table = read_images_table(store)
    cols = table.select(
        ["layout", "split", "image_id", "phase", "disaster", *COUNT_COLUMNS.values()]
    ).to_pydict()
    phases: dict[tuple[str, str], int] = defaultdict(int)
    strata: dict[tuple[str, str], str] = {}
    disasters: dict[tuple[str, str], str] = {}
    for i, layout in enumerate(cols["layout"]):
        if layout != "challenge":
            continue
        key = (cols["split"][i], cols["image_id"][i])
        phases[key] |= 1 if cols["phase"][i] == "pre" else 2
        disasters[key] = cols["disaster"][i] or cols["image_id"][i].rsplit("_", 1)[0]
        if cols["phase"][i] == "post":
            present = [c for c in DAMAGE_CLASSES if (cols[COUNT_COLUMNS[c]][i] or 0) > 0]
            strata[key] = "+".join(present) or "none"
    return [
        Pair(split, image_id, disasters[(split, image_id)], strata[(split, image_id)])
        for (split, image_id), seen in sorted(phases.items())
        if seen == 3
    ]


def assign(
    pairs: list[Pair], *, seed: int, folds: int | None, val_fraction: float
) -> dict[str, int]:
    """Pair key -> fold (0..K-1), or with ``folds`` None -> 1 for val, 0 for train."""
    by_disaster: dict[str, dict[str, list[Pair]]] = defaultdict(lambda: defaultdict(list))
    for pair in pairs:
        by_disaster[pair.disaster][pair.stratum].append(pair)
    out: dict[str, int] = {}
    sizes = [0] * (folds or 0)
    for disaster in sorted(by_disaster):
        ordered: list[Pair] = []
        for stratum in sorted(by_disaster[disaster]):
            members = sorted(by_disaster[disaster][stratum], key=lambda p: p.key)
            random.Random(f"{seed}|{disaster}|{stratum}").shuffle(members)
            ordered.extend(members)
        if folds:
            start = min(range(folds), key=lambda k: (sizes[k], k))
            for i, pair in enumerate(ordered):
                fold = (start + i) % folds
                out[pair.key] = fold
                sizes[fold] += 1
        else:
            phase = random.Random(f"{seed}|{disaster}|phase").random()
            for i, pair in enumerate(ordered):
                took = int((i + 1) * val_fraction + phase) > int(i * val_fraction + phase)
                out[pair.key] = 1 if took else 0
    return out


def _write(store: Store, rows: list[tuple[Pair, str, int | None]], report: SplitsReport) -> None:
    table = pa.table(
        {
            "image_id": [r[0].image_id for r in rows],
            "source": [r[0].source for r in rows],
            "split": [r[1] for r in rows],
            "fold": pa.array([r[2] for r in rows], type=pa.int32()),
            "disaster": [r[0].disaster for r in rows],
            "stratum": [r[0].stratum for r in rows],
        },
        schema=SPLITS_SCHEMA,
    )
    lists: dict[str, list[str]] = defaultdict(list)
    for pair, split, fold in rows:
        lists[f"{split}.txt"].append(pair.key)
        if fold is not None:
            lists[f"fold{fold}.txt"].append(pair.key)
    # lists first, the table last: the table is what says a split is complete
    stale = {n for n, _ in store.list_files(LISTS_DIR + "/")} - {f"{LISTS_DIR}/{n}" for n in lists}
    for name in sorted(lists):
        data = "".join(f"{k}\n" for k in sorted(lists[name])).encode()
        store.write_bytes(f"{LISTS_DIR}/{name}", data)
        report.outputs.append(f"{LISTS_DIR}/{name}")
    for name in sorted(stale):
        store.delete(name)
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    store.write_bytes(SPLITS_FILE, out.getvalue())
    report.outputs.append(SPLITS_FILE)
