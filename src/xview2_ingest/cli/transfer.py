"""``xview2 download``, ``status`` and ``clean``."""

from __future__ import annotations

import argparse
from typing import Any

import xview2_ingest as api

from .options import (
    add_catalog,
    add_command,
    add_common,
    add_download_options,
    capped_notes,
    check_destination,
    download_settings,
    links_of,
    prompts,
)
from .session import Session
from .tables import status_table
from .ui import ask_fresh_links, show_expired, show_failures, show_unverified


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "download",
        "download links into DEST, verified",
        "Download every link into DEST over parallel ranged connections, verify each file "
        "against the catalog while it streams, and publish it only when it matched. An "
        "interrupted or expired transfer resumes where it stopped on the next run.",
        cmd_download,
    )
    add_download_options(p)
    add_catalog(p)
    add_common(p)

    p = add_command(
        sub,
        "status",
        "what is verified, partial or missing at DEST",
        "List the files of the catalog and of the manifest at DEST: verified, unverified "
        "(in no catalog: only the size was checked), partial (a partial download or an "
        "unfinished upload) or missing.",
        cmd_status,
    )
    add_catalog(p)
    add_common(p)

    p = add_command(
        sub,
        "clean",
        "discard partial downloads and unfinished uploads at DEST",
        "Discard unfinished transfers at DEST: partial files and their resume state in a "
        "folder, this tool's unfinished multipart uploads on S3. Published files are never "
        "touched.",
        cmd_clean,
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these files (default: all)")
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be discarded; discard nothing"
    )
    add_common(p)


def cmd_download(args: argparse.Namespace) -> int:
    links = links_of(args)
    check_destination(args, creates=True)
    with Session(args) as run:
        for note in capped_notes(args):
            run.note(note)
        report = api.download(
            links,
            args.dest,
            progress=run.progress,
            fresh_links=ask_fresh_links if prompts(args) else None,
            **download_settings(args),
        )

        def show() -> None:
            show_failures(report)
            show_expired(report)
            show_unverified(report)

        return run.finish(report, show)


def cmd_status(args: argparse.Namespace) -> int:
    check_destination(args, creates=False)
    with Session(args, view=False) as run:
        report = api.status(args.dest, catalog_files=args.catalog, endpoint_url=args.endpoint_url)
        if not args.json:
            from rich.console import Console

            console = Console()
            console.print(status_table(report, console.width))
            for f in report.files:  # what is wrong and the command that fixes it
                if f.detail and f.state != "verified":
                    console.print(f"{f.name}: {f.state}: {f.detail}", markup=False)
        run.quiet = True  # the table is the output; no summary line under it
        return run.finish(report)


def cmd_clean(args: argparse.Namespace) -> int:
    check_destination(args, creates=False)
    with Session(args, view=False) as run:
        report = api.clean(
            args.dest, args.names or None, endpoint_url=args.endpoint_url, dry_run=args.dry_run
        )
        return run.finish(report)
