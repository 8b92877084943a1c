"""``make_layout``: the folder layouts training code expects, without copying bytes.

* ``torchgeo``: ``OUT/{train,test}/{images,targets}/`` as torchgeo's ``XView2`` reads
  them (pairs by ``{disaster}_{id}``, targets ``{stem}_target.png``); tier3 merged into
  ``train/`` with ``include_tier3``; with ``val`` the val pairs of ``index/splits.parquet``
  move from ``train/`` to ``val/`` (``XView2`` itself only knows train and test: a
  subclass whose ``metadata`` adds ``"val": {..., "directory": "val"}`` reads it).
* ``images-masks``: ``OUT/{split}/images/{stem}.png``, ``OUT/{split}/masks/{stem}.png``
  (the target, same file name as its image) and ``OUT/{split}.txt`` listing the stems,
  for train (tier3 merged with ``include_tier3``), val (with ``val``), test and hold.

Files are made with the store's :class:`~xview2_ingest.stores.Copier` capability where it
has one (a hard link locally, falling back to a copy; a server-side copy on S3), else
read and written.  Each file is published atomically; a rerun skips files in place with
the right size and removes files of an earlier layout that no longer belong (only under
``OUT``).  ``OUT/layout.json`` is written last and describes the complete layout.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ExitCode, UsageError, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..settings import dest_setting
from ..stores import Copier, LocalFiles, Store, open_store
from .common import listing
from .kinds import KINDS, LayoutKind
from .splits import SPLITS_FILE

log = logging.getLogger(__name__)

DEFAULT_OUT = {"torchgeo": "layouts/torchgeo", "images-masks": "layouts/images-masks"}
COPY_THREADS = 16
_SUFFIXES = ("_pre_disaster", "_post_disaster")


class SplitsMissingError(XView2Error):
    """``val`` was asked for but ``index/splits.parquet`` does not exist."""


@dataclass
class LayoutReport:
    """What :func:`make_layout` did."""

    dest: str
    kind: str
    out: str
    pairs: dict[str, int] = field(default_factory=dict)
    """Image pairs per split of the layout."""
    linked: int = 0
    """Files made by the store's copy (hard link or server-side copy)."""
    copied: int = 0
    """Files read and written (a store without the copy capability)."""
    unchanged: int = 0
    removed: int = 0
    incomplete: list[tuple[str, str]] = field(default_factory=list)
    """Pairs left out, as (pair, what is missing)."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.incomplete

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.FAILURE

    def summary(self) -> str:
        pairs = ", ".join(f"{n:,} {s}" for s, n in self.pairs.items())
        extra = ""
        if self.incomplete:
            extra += f"; {len(self.incomplete):,} pair(s) left out (missing files)"
        if self.failed:
            extra += f"; {len(self.failed):,} file(s) FAILED"
        return (
            f"{self.kind} layout: {pairs} pairs; {self.linked:,} linked, {self.copied:,} "
            f"copied, {self.unchanged:,} in place, {self.removed:,} removed in "
            f"{self.seconds:.1f}s{extra} -> {self.dest.rstrip('/')}/{self.out}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "kind": self.kind,
            "out": self.out,
            "pairs": self.pairs,
            "linked": self.linked,
            "copied": self.copied,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "incomplete": [{"pair": p, "missing": m} for p, m in self.incomplete],
            "failed": [{"file": f, "reason": r} for f, r in self.failed],
            "seconds": round(self.seconds, 3),
        }


def make_layout(
    dest: str | os.PathLike[str] | None = None,
    kind: LayoutKind = "torchgeo",
    *,
    out: str | None = None,
    include_tier3: bool = False,
    val: bool = False,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
) -> LayoutReport:
    """Materialise the ``kind`` layout of the dataset at ``dest`` under ``DEST/<out>``
    (default ``layouts/<kind>``); see the module docstring."""
    started = time.monotonic()
    emit = progress or no_progress
    if kind not in KINDS:
        raise UsageError(f"unknown layout {kind!r}", hint=f"choose from {', '.join(KINDS)}")
    out = (out or DEFAULT_OUT[kind]).strip("/")
    if not out or out.startswith(".") or "/." in out or out.split("/")[0] in SOURCES:
        raise UsageError(f"refusing layout folder {out!r}", hint="use e.g. layouts/torchgeo")
    store = open_store(dest_setting(dest), endpoint_url=endpoint_url)
    report = LayoutReport(store.url, kind, out)
    val_keys = _val_pairs(store) if val else set()
    plan, pairs, sizes = _plan(store, kind, out, include_tier3, val_keys, report)
    report.pairs = pairs
    emit(Event("stage", f"layout {kind}", detail=f"{len(plan):,} files"))
    store.delete(f"{out}/layout.json")  # written again once the layout is complete
    present = _present(store, out)
    todo = [(src, dst) for dst, src in plan.items() if present.get(dst) != sizes[src]]
    report.unchanged = len(plan) - len(todo)
    emit(Event("started", f"layout {kind}", total=len(todo)))
    _copy_all(store, todo, report, emit)
    for name in sorted(set(present) - set(plan)):
        if name.count("/") - out.count("/") < 3:  # OUT/{split}.txt, OUT/layout.json
            continue
        store.delete(name)
        report.removed += 1
    if isinstance(store, LocalFiles) and kind == "torchgeo":
        for split in ("train", "test"):  # XView2 checks that both exist
            for sub in ("images", "targets"):
                (store.root / out / split / sub).mkdir(parents=True, exist_ok=True)
    if kind == "images-masks":
        _write_lists(store, out, plan)
    report.seconds = time.monotonic() - started
    if report.ok:
        info = report.to_dict() | {"created": datetime.now(UTC).isoformat(timespec="seconds")}
        store.write_bytes(f"{out}/layout.json", json.dumps(info, indent=1).encode())
    return report


SOURCES = ("train", "test", "hold", "tier3")


def _val_pairs(store: Store) -> set[str]:
    data = store.read_bytes(SPLITS_FILE)
    if data is None:
        raise SplitsMissingError(
            f"no splits at {store.url}", file=SPLITS_FILE, hint="make them first: xview2 split"
        )
    table = pq.read_table(pa.BufferReader(data), columns=["source", "image_id", "split"])
    cols = table.to_pydict()
    return {
        f"{source}/{image_id}"
        for source, image_id, split in zip(
            cols["source"], cols["image_id"], cols["split"], strict=True
        )
        if split == "val"
    }


def _destination_split(kind: str, source: str, include_tier3: bool) -> str | None:
    if source == "tier3":
        return "train" if include_tier3 else None
    if kind == "torchgeo" and source == "hold":
        return None
    return source


def _plan(
    store: Store,
    kind: str,
    out: str,
    include_tier3: bool,
    val_keys: set[str],
    report: LayoutReport,
) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """Layout file -> source file, pairs per layout split, and source sizes."""
    plan: dict[str, str] = {}
    pairs: dict[str, int] = defaultdict(int)
    sizes: dict[str, int] = {}
    mask_dir = "targets" if kind == "torchgeo" else "masks"
    for source in SOURCES:
        dest_split = _destination_split(kind, source, include_tier3)
        if dest_split is None:
            continue
        images = listing(store, f"{source}/images")
        if not images:
            continue
        targets = listing(store, f"{source}/targets")
        sizes.update(images)
        sizes.update(targets)
        for key, stems in sorted(_group(images).items()):
            missing = _missing(source, stems, images, targets)
            if missing:
                report.incomplete.append((f"{source}/{key}", missing))
                continue
            split = "val" if f"{source}/{key}" in val_keys else dest_split
            pairs[split] += 1
            for stem in stems:
                plan[f"{out}/{split}/images/{stem}.png"] = f"{source}/images/{stem}.png"
                mask = f"{stem}_target.png" if kind == "torchgeo" else f"{stem}.png"
                plan[f"{out}/{split}/{mask_dir}/{mask}"] = f"{source}/targets/{stem}_target.png"
    if report.incomplete:
        first, what = report.incomplete[0]
        log.warning(
            "%d pair(s) left out of the layout, e.g. %s (missing %s); make the targets "
            "first (xview2 targets)",
            len(report.incomplete),
            first,
            what,
        )
    order = {"train": 0, "val": 1, "test": 2, "hold": 3}
    return plan, dict(sorted(pairs.items(), key=lambda kv: order.get(kv[0], 9))), sizes


def _group(images: dict[str, int]) -> dict[str, list[str]]:
    """Pairing key ``{disaster}_{id}`` -> image stems, from ``<split>/images/*.png``."""
    out: dict[str, list[str]] = defaultdict(list)
    for name in images:
        stem = name.rsplit("/", 1)[-1]
        if not stem.endswith(".png"):
            continue
        stem = stem[: -len(".png")]
        for suffix in _SUFFIXES:
            if stem.endswith(suffix):
                out[stem[: -len(suffix)]].append(stem)
    return {k: sorted(v) for k, v in out.items()}


def _missing(source: str, stems: list[str], images: dict[str, int], targets: dict[str, int]) -> str:
    """What the pair of ``stems`` lacks: both images and both targets are needed."""
    key = stems[0].rsplit("_", 2)[0]
    wanted = [f"{source}/images/{key}{s}.png" for s in _SUFFIXES]
    wanted += [f"{source}/targets/{key}{s}_target.png" for s in _SUFFIXES]
    absent = [w.split("/", 1)[1] for w in wanted if w not in images and w not in targets]
    return ", ".join(absent)


def _present(store: Store, out: str) -> dict[str, int]:
    return {
        name: size
        for name, size in store.list_files(out + "/")
        if not name.rsplit("/", 1)[-1].startswith(".")
    }


def _copy_all(
    store: Store, todo: list[tuple[str, str]], report: LayoutReport, emit: ProgressCallback
) -> None:
    capable = isinstance(store, Copier)

    def one(item: tuple[str, str]) -> str | None:
        source, target = item
        try:
            if isinstance(store, Copier):
                store.copy(source, target)
            else:
                data = store.read_bytes(source)
                if data is None:
                    return "vanished"
                store.write_bytes(target, data)
        except XView2Error as exc:
            return str(exc)
        return None

    threads = 1 if isinstance(store, LocalFiles) else COPY_THREADS
    with ThreadPoolExecutor(threads) as pool:
        for (_, target), error in zip(todo, pool.map(one, todo), strict=True):
            if error:
                report.failed.append((target, error))
            elif capable:
                report.linked += 1
            else:
                report.copied += 1
            emit(Event("bytes", f"layout {report.kind}", done=1, total=len(todo)))


def _write_lists(store: Store, out: str, plan: Iterable[str]) -> None:
    stems: dict[str, list[str]] = defaultdict(list)
    for name in plan:
        parts = name[len(out) + 1 :].split("/")
        if parts[1] == "images":
            stems[parts[0]].append(parts[2].removesuffix(".png"))
    for split, names in sorted(stems.items()):
        store.write_bytes(f"{out}/{split}.txt", "".join(f"{n}\n" for n in sorted(names)).encode())
