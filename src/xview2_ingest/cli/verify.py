"""``xview2 verify`` and ``xview2 import``, and ``--dry-run`` of ``download``/``ingest``."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

import xview2_ingest as api
from xview2_ingest.reports import Report

from .options import add_catalog, add_command, add_common, download_settings, links_of, wants_view
from .ui import ProgressView, err

DRY_RUN_COMMANDS = ("download", "ingest")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "verify",
        "hash published files again and check them",
        "Read every byte of the files at DEST again (NAME..., default: every file in "
        "DEST/manifest.json) and compare its SHA-1 with the catalog, else with the one "
        "recorded at download. A file that no longer matches is named with the digest "
        "expected and the one found, and marked corrupt in the manifest: `xview2 status` "
        "shows it and the next `xview2 download` fetches it again.",
        cmd_verify,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="files to check (default: all)")
    p.add_argument("--workers", type=int, help="parts read at once (default 3 local, 8 S3)")
    add_catalog(p)
    add_common(p)
    _add_json(p)

    p = add_command(
        sub,
        "import",
        "adopt archives already on this machine",
        "Place archives you already have into DEST as if downloaded: each is named by its "
        "file name (or, renamed, by its SHA-1), checked against the catalog, then hard-linked "
        "(same local file system), copied or uploaded, and recorded in the manifest. A "
        "partial browser download (.crdownload, .part, .download, or --partial) keeps its "
        "whole parts at DEST, so that the next `xview2 download` fetches only the rest.",
        cmd_import,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="archives (whole or partial)")
    p.add_argument("--partial", action="store_true", help="the files are unfinished downloads")
    p.add_argument(
        "--size",
        type=int,
        metavar="BYTES",
        help="full size of the archive a partial file begins (when the catalog lacks it)",
    )
    p.add_argument("--move", action="store_true", help="rename (or remove after copying) the files")
    p.add_argument("--force", action="store_true", help="import even if already verified")
    add_catalog(p)
    add_common(p)
    _add_json(p)

    for name in DRY_RUN_COMMANDS:
        parser = sub.choices.get(name)
        if parser is not None:
            parser.set_defaults(handler=_or_dry_run(parser.get_default("handler")))


def _add_json(p: argparse.ArgumentParser) -> None:
    with contextlib.suppress(argparse.ArgumentError):  # unless the common options have it
        p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _show(report: Report, args: argparse.Namespace, lines: list[str]) -> int:
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    elif not args.quiet:
        for line in lines:
            err(line)
        err(report.summary())
    return report.exit_code


def cmd_verify(args: argparse.Namespace) -> int:
    with ProgressView(wants_view(args), notices=False) as view:
        report = api.verify(
            args.names or None,
            args.dest,
            catalog_files=args.catalog,
            endpoint_url=args.endpoint_url,
            progress=view,
            workers=args.workers,
        )
    lines = [f"{f.status}: {f.error}" for f in report.files if f.error is not None]
    return _show(report, args, lines)


def cmd_import(args: argparse.Namespace) -> int:
    with ProgressView(wants_view(args), notices=False) as view:
        report = api.import_archives(
            args.files,
            args.dest,
            catalog_files=args.catalog,
            endpoint_url=args.endpoint_url,
            progress=view,
            partial=args.partial,
            size=args.size,
            move=args.move,
            force=args.force,
        )
    lines = []
    for f in report.files:
        if f.error is not None:
            lines.append(f"error: {f.error}")
        else:
            how = f" by {f.method}" if f.method else ""
            lines.append(f"{f.source}: {f.status} as {f.name}{how}; {f.detail}".rstrip("; "))
    return _show(report, args, lines)


def _or_dry_run(handler: Any) -> Any:
    """``handler``, or the plan when ``--dry-run`` is given."""

    def run(args: argparse.Namespace) -> int:
        if not getattr(args, "dry_run", False):
            return int(handler(args))
        return cmd_plan(args)

    return run


def cmd_plan(args: argparse.Namespace) -> int:
    settings = download_settings(args)
    report = api.plan_download(links_of(args), args.dest, **settings)
    lines = []
    for f in report.files:
        size = "size unknown" if f.size is None else f"{f.size:,} bytes"
        left = "" if f.seconds_left is None else f", link valid {max(0, int(f.seconds_left))}s"
        ranges = {True: ", ranges", False: ", no ranges", None: ""}[f.ranges]
        what = f"{f.action:8} {f.name}: {size}{ranges}{left}, catalog: {f.catalog}"
        if f.action == "resume":
            what += f", {f.bytes_resumable:,} bytes held"
        lines.append(what + (f"; {f.error}" if f.error else ""))
    return _show(report, args, lines)
