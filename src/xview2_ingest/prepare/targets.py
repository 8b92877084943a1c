"""``make_targets``: rasterise label polygons into ``<split>/targets/{stem}_target.png``.

The official archives ship targets for train, test and hold but none for tier3; this
makes them, in the official convention (see :mod:`.raster` for the exact rule), for every
split that lacks them, or on request for any split.

Resumable: ``index/targets/{split}.json`` records, for every target made, the SHA-1 of
the label it was made from, the rule, and the target's size, SHA-1 and pixel counts.  A
rerun reads each label again and skips the targets whose record still matches (same
label bytes, same rule, same size in place); the record is saved every 30 seconds and
when a run stops, and only lists targets that are durable (a local destination is synced
first).  Every target is published whole: a temporary file renamed into place, or one
PUT on an object store.  Shipped targets (present but not in the record) are left alone
unless ``force``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExitCode, UsageError, XView2Error
from ..events import Event, ProgressCallback, no_progress
from ..index.labels import SPLITS, LabelError, LabelFile, parse_label_path, read_label
from ..settings import dest_setting
from ..stores import Store, open_store
from . import raster
from .common import (
    batches,
    default_workers,
    listing,
    map_io,
    present_splits,
    publish_file,
    read_file,
    run_ordered,
    sync,
)

log = logging.getLogger(__name__)

RECORD_DIR = "index/targets"
TARGETS_FOLDER = "targets"
LOCALIZATION_FOLDER = "localization"
TASK_LABELS = 64
CHECKPOINT_SECONDS = 30.0
"""Seconds between saves of the record (each syncs a local disk first): at most this much
work is made again after a crash."""


class NoLabelsForTargetsError(XView2Error):
    """No split with label files was found (or none of those asked for)."""


def record_name(split: str) -> str:
    """Where the record of targets made for ``split`` lives."""
    return f"{RECORD_DIR}/{split}.json"


def target_name(label_name: str, folder: str = TARGETS_FOLDER) -> str:
    """``<split>/labels/{stem}.json`` -> ``<split>/<folder>/{stem}_target.png``."""
    split, _, base = label_name.split("/", 2)
    return f"{split}/{folder}/{base.rsplit('/', 1)[-1].removesuffix('.json')}_target.png"


@dataclass
class SplitTargets:
    """What happened in one split."""

    split: str
    labels: int = 0
    made: int = 0
    unchanged: int = 0
    """Targets made by an earlier run from the same label bytes and rule: skipped."""
    shipped: int = 0
    """Targets that came with the dataset, left alone (``force`` replaces them)."""
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "labels": self.labels,
            "made": self.made,
            "unchanged": self.unchanged,
            "shipped": self.shipped,
            "failed": [{"file": f, "reason": r} for f, r in self.failed],
        }


@dataclass
class TargetsReport:
    """What :func:`make_targets` did."""

    dest: str
    rule: str
    splits: list[SplitTargets] = field(default_factory=list)
    separate: bool = False
    seconds: float = 0.0

    @property
    def made(self) -> int:
        return sum(s.made for s in self.splits)

    @property
    def failed(self) -> list[tuple[str, str]]:
        return [f for s in self.splits for f in s.failed]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.ok else ExitCode.FAILURE

    def summary(self) -> str:
        if not self.splits:
            return f"no split needs targets in {self.dest} (every split has its own)"
        parts = [
            f"{s.split}: {s.made:,} made, {s.unchanged:,} unchanged"
            + (f", {s.shipped:,} shipped kept" if s.shipped else "")
            + (f", {len(s.failed):,} FAILED" if s.failed else "")
            for s in self.splits
        ]
        return f"targets ({self.rule}) in {self.seconds:.1f}s: {'; '.join(parts)} -> {self.dest}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "rule": self.rule,
            "separate": self.separate,
            "seconds": round(self.seconds, 3),
            "splits": [s.to_dict() for s in self.splits],
        }


def make_targets(
    dest: str | os.PathLike[str] | None = None,
    *,
    splits: Sequence[str] | None = None,
    force: bool = False,
    unclassified: int = raster.UNCLASSIFIED_DEFAULT,
    border: int = 0,
    separate: bool = False,
    workers: int | None = None,
    endpoint_url: str | None = None,
    progress: ProgressCallback | None = None,
) -> TargetsReport:
    """Make ``<split>/targets/{stem}_target.png`` from ``<split>/labels/{stem}.json``.

    ``splits``: which splits (default: every split with labels that has no shipped
    targets, i.e. tier3).  A target already in place is kept when it was shipped with
    the dataset, or made earlier from the same label bytes with the same rule; ``force``
    makes every target of the chosen splits again.  ``unclassified``: the value of
    un-classified buildings (0 as in the official targets, 1 as no-damage, 255 to
    ignore).  ``border``: shrink every polygon by this many pixels (the baseline's rule).
    ``separate``: also write a 0/1 footprint of every building of the post-disaster
    labels to ``<split>/localization/{stem}_target.png``.  ``workers`` processes
    rasterise in parallel (default one per CPU).
    """
    started = time.monotonic()
    emit = progress or no_progress
    rule = raster.MaskRule(unclassified, border)
    raster.cv2_module()  # fail early, with the install hint
    store = open_store(dest_setting(dest), endpoint_url=endpoint_url)
    workers = default_workers(workers)
    report = TargetsReport(store.url, rule.key(), separate=separate)
    unknown = [s for s in splits or () if s not in SPLITS]
    if unknown:
        raise UsageError(f"unknown split {unknown[0]!r}", hint=f"choose from {', '.join(SPLITS)}")
    chosen = present_splits(store, splits)
    if splits and not chosen:
        raise NoLabelsForTargetsError(
            f"no label files under {store.url}/{{{','.join(splits)}}}/labels",
            hint="extract the archives first (xview2 extract)",
        )
    for split in chosen:
        plan = _Plan(store, split, rule, separate, force)
        if splits is None and plan.shipped and not force:
            log.info("%s ships its own targets: skipped", split)
            continue
        emit(Event("stage", f"targets {split}", detail=f"{len(plan.labels):,} labels"))
        report.splits.append(plan.run(workers, endpoint_url, emit))
    report.seconds = time.monotonic() - started
    return report


# A task: (rule key, unclassified, border, separate, [(label name, record entry or None)])
Task = tuple[str, int, int, bool, list[tuple[str, dict[str, Any] | None]]]


class _Plan:
    """The labels of one split, what is in place, and the record of what was made."""

    def __init__(
        self, store: Store, split: str, rule: raster.MaskRule, separate: bool, force: bool
    ):
        self.store, self.split, self.rule = store, split, rule
        self.separate, self.force = separate, force
        self.labels = sorted(n for n in listing(store, f"{split}/labels") if n.endswith(".json"))
        self.present = listing(store, f"{split}/{TARGETS_FOLDER}")
        if separate:
            self.present |= listing(store, f"{split}/{LOCALIZATION_FOLDER}")
        self.record = _load_record(store, split)
        self.shipped = sum(1 for name in self.present if name not in self.record)

    def entry_in_place(self, label: str) -> tuple[str, dict[str, Any] | None]:
        """(status, record entry): ``make``, ``shipped`` or ``check`` (made before)."""
        target = target_name(label)
        entry = self.record.get(target)
        if self.force:
            return "make", None
        if entry is None:
            return ("shipped", None) if target in self.present else ("make", None)
        sizes_ok = self.present.get(target) == entry.get("size")
        if self.separate and label_phase(label) == "post":
            loc = entry.get("localization") or {}
            sizes_ok = sizes_ok and self.present.get(loc.get("name", "")) == loc.get("size")
        return ("check", entry) if sizes_ok else ("make", None)

    def run(self, workers: int, endpoint_url: str | None, emit: ProgressCallback) -> SplitTargets:
        result = SplitTargets(self.split, labels=len(self.labels))
        todo: list[tuple[str, dict[str, Any] | None]] = []
        for label in self.labels:
            status, entry = self.entry_in_place(label)
            if status == "shipped":
                result.shipped += 1
            else:
                todo.append((label, entry))
        rule = self.rule
        tasks: Iterator[Task] = (
            (rule.key(), rule.unclassified, rule.border, self.separate, batch)
            for batch in batches(todo, TASK_LABELS)
        )
        emit(Event("started", f"targets {self.split}", total=len(todo)))
        done, last_save, dirty = 0, time.monotonic(), False
        try:
            for outcomes in run_ordered(
                _do_task, tasks, self.store, workers=workers, endpoint_url=endpoint_url
            ):
                for out in outcomes:
                    if out["status"] == "made":
                        result.made += 1
                        self.record[out["target"]] = out["entry"]
                        dirty = True
                    elif out["status"] == "unchanged":
                        result.unchanged += 1
                    else:
                        result.failed.append((out["label"], out["reason"]))
                        log.warning("no target for %s: %s", out["label"], out["reason"])
                done += len(outcomes)
                emit(Event("bytes", f"targets {self.split}", done=len(outcomes), total=len(todo)))
                if dirty and time.monotonic() - last_save >= CHECKPOINT_SECONDS:
                    self.save()
                    last_save, dirty = time.monotonic(), False
        finally:
            if dirty:
                self.save()
        emit(Event("published", f"targets {self.split}", done=done, total=len(todo)))
        return result

    def save(self) -> None:
        sync(self.store)  # the record only ever lists durable targets
        data = {"version": 1, "split": self.split, "targets": dict(sorted(self.record.items()))}
        self.store.write_bytes(record_name(self.split), json.dumps(data).encode())


def label_phase(label: str) -> str:
    return "post" if label.endswith("_post_disaster.json") else "pre"


def _load_record(store: Store, split: str) -> dict[str, dict[str, Any]]:
    data = store.read_bytes(record_name(split))
    if not data:
        return {}
    try:
        loaded = json.loads(data)
        targets = loaded["targets"]
        if not isinstance(targets, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        log.warning("%s is unreadable: every target of %s is made again", record_name(split), split)
        return {}
    return targets


def load_records(store: Store) -> dict[str, dict[str, Any]]:
    """Every target made by :func:`make_targets` at ``store`` -> its record entry."""
    out: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        out.update(_load_record(store, split))
    return out


# ------------------------------------------------------------------------------ workers


def _do_task(store: Store, task: Task) -> list[dict[str, Any]]:
    key, unclassified, border, separate, items = task
    rule = raster.MaskRule(unclassified, border)

    def read(item: tuple[str, dict[str, Any] | None]) -> bytes | Exception:
        try:
            return read_file(store, item[0])
        except XView2Error as exc:
            return exc

    contents = map_io(read, items, store)
    outcomes: list[dict[str, Any]] = []
    parsed: list[tuple[str, str, LabelFile]] = []
    for (label, entry), data in zip(items, contents, strict=True):
        if isinstance(data, Exception):
            outcomes.append({"status": "failed", "label": label, "reason": str(data)})
            continue
        digest = hashlib.sha1(data).hexdigest()
        if entry is not None and entry.get("label_sha1") == digest and entry.get("rule") == key:
            outcomes.append({"status": "unchanged", "label": label})
            continue
        try:
            parsed.append((label, digest, read_label(parse_label_path(label), data)))
        except LabelError as exc:
            outcomes.append({"status": "failed", "label": label, "reason": str(exc)})
    writes: list[tuple[str, bytes]] = []
    polygons = raster.polygons_of([p[2] for p in parsed])
    for (label, digest, doc), buildings in zip(parsed, polygons, strict=True):
        if isinstance(buildings, ValueError):
            outcomes.append({"status": "failed", "label": label, "reason": str(buildings)})
            continue
        made = _make_one(label, doc, buildings, rule, separate)
        entry = made.entry | {"label_sha1": digest, "rule": key}
        writes.extend(made.files)
        outcomes.append(
            {"status": "made", "label": label, "target": made.files[0][0], "entry": entry}
        )

    def write(item: tuple[str, bytes]) -> Exception | None:
        try:
            publish_file(store, *item)
        except XView2Error as exc:
            return exc
        return None

    errors = dict(zip((n for n, _ in writes), map_io(write, writes, store), strict=True))
    for out in outcomes:
        if out["status"] != "made":
            continue
        names = [out["target"], (out["entry"].get("localization") or {}).get("name")]
        failure = next((errors[n] for n in names if n and errors.get(n)), None)
        if failure is not None:
            out.update(status="failed", reason=str(failure))
    return outcomes


@dataclass
class _Made:
    files: list[tuple[str, bytes]]
    entry: dict[str, Any]


def _make_one(
    label: str,
    parsed: LabelFile,
    buildings: list[raster.Rings],
    rule: raster.MaskRule,
    separate: bool,
) -> _Made:
    post = parsed.ref.phase == "post"
    mask, footprint = raster.label_masks(
        parsed, rule, localization=separate and post, buildings=buildings
    )
    png = raster.encode_png(mask)
    name = target_name(label)
    entry: dict[str, Any] = {
        "size": len(png),
        "sha1": hashlib.sha1(png).hexdigest(),
        "pixels": raster.pixel_counts(mask),
    }
    files = [(name, png)]
    if footprint is not None:
        loc = raster.encode_png(footprint)
        loc_name = target_name(label, LOCALIZATION_FOLDER)
        files.append((loc_name, loc))
        entry["localization"] = {"name": loc_name, "size": len(loc)}
    return _Made(files, entry)
