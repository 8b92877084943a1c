"""``xview2 download``, ``status`` and ``clean``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import xview2_ingest as api

from .options import (
    add_catalog,
    add_command,
    add_common,
    add_download_options,
    download_settings,
    links_of,
    prompts,
    wants_view,
)
from .ui import ProgressView, ask_fresh_links, err, show_expired, show_failures


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
        "List the files of the catalog and of the manifest at DEST: verified, unverified, "
        "partial (an unfinished transfer) or missing.",
        cmd_status,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    add_catalog(p)
    add_common(p)

    p = add_command(
        sub,
        "clean",
        "discard unfinished transfers at DEST",
        "Discard unfinished transfers at DEST: partial files and their resume state "
        "locally, this tool's unfinished uploads on object stores. Published files are "
        "never touched.",
        cmd_clean,
    )
    p.add_argument("name", nargs="?", help="only this file")
    add_common(p)


def cmd_download(args: argparse.Namespace) -> int:
    links = links_of(args)
    with ProgressView(wants_view(args), notices=not args.quiet) as view:
        report = api.download(
            links,
            args.dest,
            progress=view,
            fresh_links=ask_fresh_links if prompts(args) else None,
            **download_settings(args),
        )
    show_failures(report)
    show_expired(report)
    if not args.quiet:
        err(report.summary())
    return report.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    report = api.status(args.dest, catalog_files=args.catalog, endpoint_url=args.endpoint_url)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        return report.exit_code
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"xview2 at {report.dest}")
    table.add_column("file", no_wrap=True)
    for col in ("state", "size", "sha1", "verified at"):
        table.add_column(col)
    colors = {"verified": "green", "unverified": "yellow", "partial": "cyan", "missing": "dim"}
    colors["corrupt"] = "bold red"  # found by `xview2 verify`
    colors.update(truncated="bold red", extracted="blue")  # found by, or done by, extract
    for f in report.files:
        size = f"{f.size:,}" if f.size else (f"{f.bytes_done:,} so far" if f.bytes_done else "")
        table.add_row(
            f.name, f"[{colors[f.state]}]{f.state}", size, (f.sha1 or "")[:12], f.verified_at or ""
        )
    console = Console()
    console.print(table)
    for f in report.files:
        if f.detail and f.state != "verified":
            console.print(f"{f.name}: {f.state}: {f.detail}", markup=False)
    if report.pending:
        console.print(f"{len(report.pending)} unfinished transfer(s); `xview2 clean` drops them:")
        for p in report.pending:
            console.print(f"  {p.name}: {p.parts_done} parts, {p.bytes_done:,} bytes ({p.detail})")
    return report.exit_code


def cmd_clean(args: argparse.Namespace) -> int:
    report = api.clean(args.dest, args.name, endpoint_url=args.endpoint_url)
    if not args.quiet:
        err(report.summary())
    return report.exit_code
