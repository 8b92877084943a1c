"""``xview2 targets``, ``pixels``, ``split`` and ``layout``: the dataset made ready to
train on, one step at a time (``xview2 ingest --targets --layout ...`` runs them all)."""

from __future__ import annotations

import argparse
from typing import Any

import xview2_ingest as api
from xview2_ingest.reports import Report

from .options import (
    add_command,
    add_common,
    add_include,
    add_split_options,
    check_destination,
    split_settings,
    whole_number,
)
from .session import Session
from .ui import err

SPLIT_NAMES = ("train", "test", "hold", "tier3")
MAX_SHOWN = 20


def pixel_value(text: str) -> int:
    """An argparse type: a pixel value, 0 to 255."""
    value = whole_number(0)(text)
    if value > 255:
        raise argparse.ArgumentTypeError(f"must be a pixel value 0-255 (got {value})")
    return value


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "targets",
        "make target masks from the labels (tier3)",
        "Rasterise the label polygons of DEST/<split>/labels into "
        "DEST/<split>/targets/{stem}_target.png, the way the official targets were made: "
        "pre-disaster buildings 1; post-disaster 1 no-damage, 2 minor, 3 major, "
        "4 destroyed, un-classified 0 (--unclassified); background 0. By default only the "
        "splits that ship none (tier3). A rerun skips targets made from the same labels "
        "with the same rule; targets shipped with the dataset are kept unless --force.",
        cmd_targets,
    )
    p.add_argument(
        "--split",
        action="append",
        choices=SPLIT_NAMES,
        metavar="SPLIT",
        help=f"a split to make targets for, repeatable ({', '.join(SPLIT_NAMES)}; default: "
        "every split without shipped targets)",
    )
    p.add_argument("--force", action="store_true", help="make every target again")
    p.add_argument(
        "--unclassified",
        type=pixel_value,
        metavar="N",
        help="value of un-classified buildings (default 0 as the official targets; 1 as "
        "no-damage, 255 to ignore)",
    )
    p.add_argument(
        "--border",
        type=whole_number(0),
        default=0,
        metavar="N",
        help="shrink every polygon by N pixels (the xView2 baseline's rule; default 0)",
    )
    p.add_argument(
        "--separate",
        action="store_true",
        help="also write 0/1 building footprints to DEST/<split>/localization/",
    )
    _add_workers(p, "rasterise")
    add_common(p)

    p = add_command(
        sub,
        "pixels",
        "pixels per target value into the index",
        "Fill the px_0 ... px_4 and px_other columns of DEST/index/images.parquet with "
        "the pixels per value of each image's target (read from the record of "
        "`xview2 targets` where it has them, else decoded).",
        cmd_pixels,
    )
    _add_workers(p, "decode")
    add_common(p)

    p = add_command(
        sub,
        "split",
        "reproducible train/val splits or folds",
        "Assign the indexed train pairs (pre and post together) to train and val, or to "
        "K folds, stratified by disaster and by the damage classes present, with a seeded "
        "generator: the same index and flags give the same DEST/index/splits.parquet and "
        "DEST/index/splits/*.txt on any machine.",
        cmd_split,
    )
    add_split_options(p, "default 0.1")
    add_include(
        p,
        ("tier3", "test"),
        "tier3: split tier3's pairs with train's; test: list test and hold pairs under "
        "their own split (repeatable)",
    )
    add_common(p)

    p = add_command(
        sub,
        "layout",
        "the folder layout training code expects",
        "Lay the dataset out under DEST/layouts/KIND (or --out) without copying bytes "
        "(hard links on a local disk, server-side copies on S3). torchgeo: "
        "{train,test}/{images,targets}/ as torchgeo's XView2 reads them; images-masks: "
        "<split>/{images,masks}/ with a <split>.txt list of stems. A rerun only changes "
        "what differs.",
        cmd_layout,
    )
    p.add_argument(
        "kind", choices=api.LAYOUT_KINDS, metavar="KIND", help="torchgeo or images-masks"
    )
    p.add_argument("--out", metavar="PATH", help="folder inside DEST (default: layouts/KIND)")
    add_include(p, ("tier3",), "tier3: merge tier3's pairs into train")
    p.add_argument(
        "--val",
        action="store_true",
        help="put the val pairs of `xview2 split` in val/ (torchgeo: a subclass of XView2 "
        "whose metadata adds val reads it)",
    )
    add_common(p)


def _add_workers(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--workers",
        type=whole_number(),
        metavar="N",
        help=f"processes that {verb} in parallel (default: one per CPU)",
    )


def show_problems(report: Report) -> None:
    """The items a preparation step failed on or left out, a few of them by name."""
    problems = [*getattr(report, "failed", []), *getattr(report, "incomplete", [])]
    for item, reason in problems[:MAX_SHOWN]:
        err(f"{item}: {reason}")
    if len(problems) > MAX_SHOWN:
        err(f"... and {len(problems) - MAX_SHOWN} more")
    if getattr(report, "incomplete", None):
        err(
            "pairs without both images and both targets were left out; make the targets "
            "first: xview2 targets"
        )


def cmd_targets(args: argparse.Namespace) -> int:
    check_destination(args, creates=False)
    rule = {} if args.unclassified is None else {"unclassified": args.unclassified}
    with Session(args) as run:
        report = api.make_targets(
            args.dest,
            splits=args.split,
            force=args.force,
            border=args.border,
            separate=args.separate,
            workers=args.workers,
            endpoint_url=args.endpoint_url,
            progress=run.progress,
            **rule,
        )
        return run.finish(report, lambda: show_problems(report))


def cmd_pixels(args: argparse.Namespace) -> int:
    check_destination(args, creates=False)
    with Session(args) as run:
        report = api.count_pixels(
            args.dest, workers=args.workers, endpoint_url=args.endpoint_url, progress=run.progress
        )
        return run.finish(report, lambda: show_problems(report))


def cmd_split(args: argparse.Namespace) -> int:
    settings = split_settings(args)
    check_destination(args, creates=False)
    with Session(args) as run:
        report = api.make_splits(
            args.dest,
            val_fraction=0.1 if args.val_fraction is None else args.val_fraction,
            include_tier3="tier3" in args.include,
            include_test="test" in args.include,
            endpoint_url=args.endpoint_url,
            progress=run.progress,
            **settings,
        )
        return run.finish(report)


def cmd_layout(args: argparse.Namespace) -> int:
    check_destination(args, creates=False)
    with Session(args) as run:
        report = api.make_layout(
            args.dest,
            args.kind,
            out=args.out,
            include_tier3="tier3" in args.include,
            val=args.val,
            endpoint_url=args.endpoint_url,
            progress=run.progress,
        )
        return run.finish(report, lambda: show_problems(report))
