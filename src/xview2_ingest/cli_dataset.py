"""The dataset commands of ``xview2``: extract, index, stats, ingest, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ExitCode


def _err(message: str) -> None:
    sys.stderr.write(message.rstrip() + "\n")


def add_dataset_commands(
    sub: Any,
    add_common: Callable[[argparse.ArgumentParser], None],
    add_download_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register the dataset subcommands on ``sub``."""
    p = sub.add_parser("extract", help="unpack verified archives safely into DEST")
    p.add_argument("names", nargs="*", metavar="NAME", help="archives (default: all verified)")
    _add_extract_options(p)
    add_common(p)

    p = sub.add_parser("index", help="index the labels into DEST/index/*.parquet")
    p.add_argument(
        "--from-archives",
        action="store_true",
        help="read the labels straight from the archives, without extracting",
    )
    add_common(p)

    p = sub.add_parser("stats", help="pairs and buildings per split, disaster, damage class")
    _add_stats_options(p)
    add_common(p)

    p = sub.add_parser("ingest", help="download, extract and index in one command")
    add_download_options(p)
    _add_extract_options(p)
    p.add_argument("--no-extract", action="store_true", help="stop after the download")
    p.add_argument(
        "--from-archives",
        action="store_true",
        help="index the labels from the archives instead of the extracted tree",
    )
    add_common(p)

    p = sub.add_parser(
        "demo",
        help="the whole job on a small synthetic dataset, served on "
        "127.0.0.1 behind expiring signed links",
    )
    p.add_argument("--pairs", type=int, default=40, help="image pairs per split (default 40)")
    p.add_argument("--ttl", type=float, default=300, help="seconds the demo links live")
    add_common(p)


def _add_extract_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--remove-archives",
        action="store_true",
        help="delete each archive after its verified, complete extraction",
    )
    p.add_argument(
        "--assemble-geotiff",
        action="store_true",
        help="also join the six GeoTIFF parts into xview2_geotiff.tgz",
    )
    p.add_argument("--workers", type=int, default=8, help="parallel member writers (default 8)")


def _add_stats_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="terminal table (default), or CSV / JSON on stdout",
    )
    p.add_argument("--png", metavar="FILE", help="also write a bar chart as PNG")


def _view(args: argparse.Namespace) -> Any:
    from .cli import ProgressView

    return ProgressView(sys.stderr.isatty() and not args.quiet)


def _extract(args: argparse.Namespace, names: list[str] | None, view: Any) -> int:
    from .extract import extract

    report = extract(
        names,
        args.dest,
        endpoint_url=args.endpoint_url,
        progress=view,
        remove_archives=args.remove_archives,
        assemble_geotiff=args.assemble_geotiff,
        workers=args.workers,
    )
    _print_failures(report)
    if not args.quiet:
        _err(report.summary())
    return int(report.exit_code)


def cmd_extract(args: argparse.Namespace) -> int:
    with _view(args) as view:
        return _extract(args, args.names or None, view)


def cmd_index(args: argparse.Namespace) -> int:
    from .index import build_index

    with _view(args) as view:
        report = build_index(
            args.dest,
            from_archives=args.from_archives,
            endpoint_url=args.endpoint_url,
            progress=view,
        )
    for file, reason in report.skipped[:20]:
        _err(f"skipped {file}: {reason}")
    if len(report.skipped) > 20:
        _err(f"... and {len(report.skipped) - 20} more malformed label files")
    if not args.quiet:
        _err(report.summary())
    return int(report.exit_code)


def _show_stats(args: argparse.Namespace, stats: Any) -> None:
    fmt = getattr(args, "format", "table")
    if fmt == "csv":
        sys.stdout.write(stats.to_csv())
    elif fmt == "json":
        sys.stdout.write(stats.to_json() + "\n")
    else:
        from rich.console import Console

        Console().print(stats.to_rich())
    png = getattr(args, "png", None)
    if png:
        stats.write_png(png)
        if not args.quiet:
            _err(f"chart written to {png}")


def cmd_stats(args: argparse.Namespace) -> int:
    from .index import compute_stats

    _show_stats(args, compute_stats(args.dest, endpoint_url=args.endpoint_url))
    return ExitCode.OK


def _print_failures(report: Any) -> None:
    for result in getattr(report, "archives", getattr(report, "files", [])):
        error = getattr(result, "error", None)
        if error is not None:
            _err(f"error: {error}")


def run_ingest(args: argparse.Namespace, links: list[Any], view: Any) -> int:
    """Download, then extract and index what is verified; one progress display."""
    from .cli import _report_failures, run_download
    from .events import Event
    from .index import build_index

    view(Event("stage", "download"))
    report = run_download(args, links, view)
    _report_failures(report)
    if not args.quiet:
        _err(report.summary())
    if report.exit_code != ExitCode.OK or args.no_extract:
        return report.exit_code
    archives = [f.name for f in report.files]
    if not args.from_archives:
        view(Event("stage", "extract"))
        code = _extract(args, archives, view)
        if code != ExitCode.OK:
            return code
    view(Event("stage", "index"))
    indexed = build_index(
        args.dest, from_archives=args.from_archives, endpoint_url=args.endpoint_url, progress=view
    )
    if not args.quiet:
        _err(indexed.summary())
    return int(indexed.exit_code)


def cmd_ingest(args: argparse.Namespace) -> int:
    from .cli import _links

    links = _links(args)
    with _view(args) as view:
        return run_ingest(args, links, view)


def cmd_demo(args: argparse.Namespace) -> int:
    """Make synthetic archives, serve them behind expiring links, ingest, show stats."""
    import json
    import tempfile

    from .config import dest_setting
    from .demo.server import SignedLinkServer
    from .demo.synth import make_dataset
    from .index import compute_stats
    from .links import parse_links_text
    from .transfer.digest import Digest

    dest = dest_setting(args.dest)
    with tempfile.TemporaryDirectory(prefix="xview2-demo-") as tmp:
        root = Path(tmp) / "served"
        paths, _ = make_dataset(
            root, {"train": args.pairs, "test": max(1, args.pairs // 3)}, padding=40_000
        )
        catalog = Path(tmp) / "demo-catalog.json"
        entries = {}
        for path in paths:
            digest = Digest("sha1")
            digest.update(path.read_bytes())
            entries[path.name] = {"size": path.stat().st_size, "sha1": digest.hexdigest()}
        catalog.write_text(json.dumps(entries))
        with SignedLinkServer(root, ttl=args.ttl) as server:
            if not args.quiet:
                _err(
                    f"demo: serving {len(paths)} synthetic archives on {server.base_url} "
                    f"behind links that expire in {int(args.ttl)}s; ingesting into {dest}"
                )
            links = parse_links_text(server.links_text(), "<demo links>")
            ns = argparse.Namespace(
                **vars(args),
                urls=[],
                links=None,
                connections=None,
                max_connections=None,
                memory_mb=None,
                part_size_mb=None,
                force=True,
                all_digests=False,
                no_prompt=True,
                remove_archives=False,
                assemble_geotiff=False,
                workers=8,
                no_extract=False,
                from_archives=False,
            )
            ns.catalog = [*args.catalog, str(catalog)]
            ns.dest = dest
            with _view(args) as view:
                code = run_ingest(ns, links, view)
    if code == ExitCode.OK and not args.quiet:
        _show_stats(
            argparse.Namespace(format="table", png=None, quiet=args.quiet),
            compute_stats(dest, endpoint_url=args.endpoint_url),
        )
    return code


DATASET_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "extract": cmd_extract,
    "index": cmd_index,
    "stats": cmd_stats,
    "ingest": cmd_ingest,
    "demo": cmd_demo,
}
