"""``xview2 extract``, ``index``, ``stats``, ``ingest`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import xview2_ingest as api
from xview2_ingest.errors import UsageError
from xview2_ingest.reports import IngestReport

from .options import (
    FILE,
    add_catalog,
    add_command,
    add_common,
    add_download_options,
    add_extract_options,
    add_include,
    add_split_options,
    capped_notes,
    check_destination,
    download_settings,
    links_of,
    prompts,
    split_settings,
    whole_number,
)
from .prepare import show_problems
from .session import Session
from .tables import Column, render, stats_tables
from .ui import ask_fresh_links, err, show_expired, show_failures, show_unverified

MAX_SKIPPED_SHOWN = 20
READY_STAGES = ("targets", "pixels", "layout")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "extract",
        "unpack verified archives safely into DEST",
        "Unpack the downloaded archives at DEST into <split>/{images,labels,targets}, in "
        "one streamed pass each, refusing anything unsafe; members are published only once "
        "the whole archive matched the SHA-1 it was downloaded with. A rerun skips what is "
        "in place (sizes; --check: contents).",
        cmd_extract,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="archives (default: all verified)")
    add_extract_options(p)
    p.add_argument(
        "--check",
        action="store_true",
        help="read every extracted file again and compare it with the CRC-32 recorded at "
        "extraction; what differs is written again from the archive",
    )
    add_catalog(p)
    add_common(p)

    p = add_command(
        sub,
        "index",
        "index the labels into DEST/index/*.parquet",
        "Index every label file into DEST/index/images.parquet (one row per image) and "
        "DEST/index/buildings.parquet (one row per building, GeoParquet).",
        cmd_index,
    )
    p.add_argument(
        "--from-archives",
        action="store_true",
        help="read the labels straight from the archives, without extracting",
    )
    add_common(p)

    p = add_command(
        sub,
        "stats",
        "pairs and buildings per split, disaster, damage class",
        "Statistics of the indexed dataset: image pairs and buildings per split, disaster "
        "and damage class.",
        cmd_stats,
    )
    p.add_argument(
        "--format",
        choices=["table", "csv"],
        default="table",
        help="a table for the terminal (default) or CSV on stdout; --json for JSON",
    )
    p.add_argument("--png", metavar="FILE", help="also write a bar chart as PNG").complete = FILE  # type: ignore[attr-defined]
    p.add_argument(
        "--bands",
        action="store_true",
        help="also the mean and standard deviation of each image band per split (one "
        "pass over the images, kept in DEST/index/bands.json while they are unchanged)",
    )
    add_common(p)

    p = add_command(
        sub,
        "ingest",
        "download, extract and index in one command",
        "Download the links into DEST (verified), then extract and index what was "
        "verified: from links to an indexed dataset in one command.",
        cmd_ingest,
    )
    add_download_options(p)
    add_extract_options(p)
    p.add_argument("--no-extract", action="store_true", help="stop after the download")
    p.add_argument(
        "--from-archives",
        action="store_true",
        help="index the labels from the archives instead of the extracted tree",
    )
    add_ready_options(p)
    add_catalog(p)
    add_common(p)

    p = add_command(
        sub,
        "demo",
        "the whole job on a small synthetic dataset",
        "Make a small synthetic dataset in the real layout, serve it on 127.0.0.1 behind "
        "expiring signed links, ingest it into DEST (default ./data/xview2-demo, never "
        "$XVIEW2_DEST; a folder holding real archives is refused) and show its statistics.",
        cmd_demo,
    )
    p.add_argument(
        "--pairs",
        type=whole_number(),
        default=40,
        metavar="N",
        help="image pairs per split (default: 40)",
    )
    p.add_argument(
        "--ttl",
        type=float,
        default=300,
        metavar="SECONDS",
        help="seconds the demo links live (default: 300)",
    )
    add_common(p)


def add_ready_options(p: argparse.ArgumentParser) -> None:
    """``ingest``'s flags that make the dataset ready to train on."""
    p.add_argument(
        "--targets",
        action="store_true",
        help="make the targets the archives lack (tier3; as `xview2 targets`) and fill the "
        "index's pixel counts",
    )
    p.add_argument(
        "--layout",
        choices=api.LAYOUT_KINDS,
        metavar="KIND",
        help="then lay the dataset out for training: torchgeo or images-masks (as "
        "`xview2 layout`; val/ too with --val-fraction or --folds)",
    )
    add_include(
        p,
        api.INCLUDE_CHOICES,
        "tier3: merge tier3 into train (splits and layout); test: list test and hold "
        "pairs in the splits (repeatable)",
    )
    add_split_options(p, "default: no val split")


def ready_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ready-to-train flags as keyword arguments of ``ingest``."""
    return {
        "targets": args.targets,
        "layout": args.layout,
        "include": args.include,
        "val_fraction": args.val_fraction,
        **split_settings(args),
    }


def cmd_extract(args: argparse.Namespace) -> int:
    check_destination(args, creates=False)
    with Session(args) as run:
        report = api.extract(
            args.names or None,
            args.dest,
            catalog_files=args.catalog,
            endpoint_url=args.endpoint_url,
            progress=run.progress,
            remove_archives=args.remove_archives,
            assemble_geotiff=args.assemble_geotiff,
            check=args.check,
            workers=args.workers,
        )
        return run.finish(report, lambda: show_failures(report))


def _show_skipped(skipped: list[tuple[str, str]]) -> None:
    for file, reason in skipped[:MAX_SKIPPED_SHOWN]:
        err(f"skipped {file}: {reason}")
    if len(skipped) > MAX_SKIPPED_SHOWN:
        err(f"... and {len(skipped) - MAX_SKIPPED_SHOWN} more malformed label files")


def cmd_index(args: argparse.Namespace) -> int:
    check_destination(args, creates=False)
    with Session(args) as run:
        report = api.build_index(
            args.dest,
            from_archives=args.from_archives,
            endpoint_url=args.endpoint_url,
            progress=run.progress,
        )
        return run.finish(report, lambda: _show_skipped(report.skipped))


def _print_stats(stats: api.DatasetStats) -> None:
    from rich.console import Console

    console = Console()
    console.print(stats_tables(stats, console.width))


def _print_bands(stats: api.DatasetStats) -> None:
    from rich.console import Console

    bands = stats.bands or {}
    names = list(dict.fromkeys(b["band"] for split in bands.values() for b in split))
    columns = [Column("split", list(bands))]
    for name in names:
        cells = []
        for split in bands.values():
            found = next((b for b in split if b["band"] == name), None)
            cells.append(f"{found['mean']:.2f} ± {found['std']:.2f}" if found else "")
        columns.append(Column(name, cells, right=True))
    console = Console()
    console.print(render("image bands (mean ± std, 0-255)", columns, console.width))


def cmd_stats(args: argparse.Namespace) -> int:
    if args.json and args.format == "csv":
        raise UsageError("--format csv and --json both write to stdout", hint="choose one")
    if args.bands and args.format == "csv":
        raise UsageError(
            "the CSV has no band columns", hint="use --bands with the table or with --json"
        )
    check_destination(args, creates=False)
    with Session(args, view=args.bands) as run:
        stats = api.dataset_stats(
            args.dest, endpoint_url=args.endpoint_url, bands=args.bands, progress=run.progress
        )
        if args.format == "csv":
            sys.stdout.write(stats.to_csv())
        elif not args.json:
            _print_stats(stats)
            if stats.bands:
                _print_bands(stats)
        if args.png:
            stats.write_png(args.png)
            if not args.quiet:
                err(f"chart written to {args.png}")
        run.quiet = True  # the table is the output
        return run.finish(stats)


def _show_ingest(report: IngestReport) -> None:
    for stage in report.stages.values():
        if stage is not None:
            show_failures(stage)
    download = report.stages.get("download")
    if isinstance(download, api.DownloadReport):
        show_expired(download)
        show_unverified(download)
    index = report.stages.get("index")
    if isinstance(index, api.IndexReport):
        _show_skipped(index.skipped)
    for name in READY_STAGES:
        stage = report.stages.get(name)
        if stage is not None:
            show_problems(stage)


def cmd_ingest(args: argparse.Namespace) -> int:
    links = links_of(args)
    check_destination(args, creates=True)
    with Session(args) as run:
        for note in capped_notes(args):
            run.note(note)
        report = api.ingest(
            links,
            args.dest,
            progress=run.progress,
            fresh_links=ask_fresh_links if prompts(args) else None,
            extract_archives=not args.no_extract,
            from_archives=args.from_archives,
            remove_archives=args.remove_archives,
            assemble_geotiff=args.assemble_geotiff,
            workers=args.workers,
            **ready_settings(args),
            **download_settings(args),
        )
        return run.finish(report, lambda: _show_ingest(report))


def cmd_demo(args: argparse.Namespace) -> int:
    if args.dest is not None:  # else its own folder, never $XVIEW2_DEST
        check_destination(args, creates=True)
    with Session(args) as run:
        report = api.demo(
            args.dest,
            pairs=args.pairs,
            ttl=args.ttl,
            endpoint_url=args.endpoint_url,
            progress=run.progress,
        )
        stats = None
        if report.exit_code == 0:
            stats = api.dataset_stats(report.dest, endpoint_url=args.endpoint_url)
        extra = {"stats": stats.to_dict()} if stats is not None else {}
        code = run.finish(report, lambda: _show_ingest(report), **extra)
        if stats is not None and not args.quiet and not args.json:
            _print_stats(stats)
        return code
