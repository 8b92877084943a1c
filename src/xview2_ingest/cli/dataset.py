"""``xview2 extract``, ``index``, ``stats``, ``ingest`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import xview2_ingest as api
from xview2_ingest.reports import IngestReport

from .options import (
    add_catalog,
    add_command,
    add_common,
    add_download_options,
    add_extract_options,
    download_settings,
    links_of,
    prompts,
    wants_view,
)
from .ui import ProgressView, ask_fresh_links, err, show_expired, show_failures

MAX_SKIPPED_SHOWN = 20


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
    _add_stats_options(p)
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
    p.add_argument("--pairs", type=int, default=40, help="image pairs per split (default: 40)")
    p.add_argument(
        "--ttl", type=float, default=300, help="seconds the demo links live (default: 300)"
    )
    add_common(p)


def _add_stats_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="terminal table (default), or CSV / JSON on stdout",
    )
    p.add_argument("--png", metavar="FILE", help="also write a bar chart as PNG")


def _finish(report: Any, quiet: bool) -> int:
    show_failures(report)
    if not quiet:
        err(report.summary())
    return int(report.exit_code)


def cmd_extract(args: argparse.Namespace) -> int:
    with ProgressView(wants_view(args), notices=not args.quiet) as view:
        report = api.extract(
            args.names or None,
            args.dest,
            catalog_files=args.catalog,
            endpoint_url=args.endpoint_url,
            progress=view,
            remove_archives=args.remove_archives,
            assemble_geotiff=args.assemble_geotiff,
            check=args.check,
            workers=args.workers,
        )
    return _finish(report, args.quiet)


def _show_skipped(skipped: list[tuple[str, str]]) -> None:
    for file, reason in skipped[:MAX_SKIPPED_SHOWN]:
        err(f"skipped {file}: {reason}")
    if len(skipped) > MAX_SKIPPED_SHOWN:
        err(f"... and {len(skipped) - MAX_SKIPPED_SHOWN} more malformed label files")


def cmd_index(args: argparse.Namespace) -> int:
    with ProgressView(wants_view(args), notices=not args.quiet) as view:
        report = api.build_index(
            args.dest,
            from_archives=args.from_archives,
            endpoint_url=args.endpoint_url,
            progress=view,
        )
    _show_skipped(report.skipped)
    return _finish(report, args.quiet)


def _show_stats(stats: api.DatasetStats, fmt: str, png: str | None, quiet: bool) -> None:
    if fmt == "csv":
        sys.stdout.write(stats.to_csv())
    elif fmt == "json":
        sys.stdout.write(stats.to_json() + "\n")
    else:
        from rich.console import Console

        Console().print(stats.to_rich())
    if png:
        stats.write_png(png)
        if not quiet:
            err(f"chart written to {png}")


def cmd_stats(args: argparse.Namespace) -> int:
    stats = api.dataset_stats(args.dest, endpoint_url=args.endpoint_url)
    _show_stats(stats, args.format, args.png, args.quiet)
    return stats.exit_code


def _show_ingest(report: IngestReport, quiet: bool) -> int:
    for stage in report.stages.values():
        if stage is not None:
            show_failures(stage)
    download = report.stages.get("download")
    if isinstance(download, api.DownloadReport):
        show_expired(download)
    index = report.stages.get("index")
    if isinstance(index, api.IndexReport):
        _show_skipped(index.skipped)
    if not quiet:
        err(report.summary())
    return report.exit_code


def cmd_ingest(args: argparse.Namespace) -> int:
    links = links_of(args)
    with ProgressView(wants_view(args), notices=not args.quiet) as view:
        report = api.ingest(
            links,
            args.dest,
            progress=view,
            fresh_links=ask_fresh_links if prompts(args) else None,
            extract_archives=not args.no_extract,
            from_archives=args.from_archives,
            remove_archives=args.remove_archives,
            assemble_geotiff=args.assemble_geotiff,
            workers=args.workers,
            **download_settings(args),
        )
    return _show_ingest(report, args.quiet)


def cmd_demo(args: argparse.Namespace) -> int:
    with ProgressView(wants_view(args), notices=not args.quiet) as view:
        report = api.demo(
            args.dest,
            pairs=args.pairs,
            ttl=args.ttl,
            endpoint_url=args.endpoint_url,
            progress=view,
        )
    code = _show_ingest(report, args.quiet)
    if code == 0 and not args.quiet:
        stats = api.dataset_stats(report.dest, endpoint_url=args.endpoint_url)
        _show_stats(stats, "table", None, args.quiet)
    return code
