"""Options shared by several commands, defined once, and their translation into the
plain values the library takes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from xview2_ingest import Link, read_links
from xview2_ingest.errors import EXIT_CODES_HELP, UsageError
from xview2_ingest.settings import (
    DEFAULT_CONNECTIONS,
    DEFAULT_DEST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MEMORY_MB,
)

Handler = Callable[[argparse.Namespace], int]
MiB = 1 << 20


def add_command(sub: Any, name: str, summary: str, description: str, handler: Handler) -> Any:
    """A subcommand with its one-line summary, its description and the exit codes."""
    p = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=handler)
    return p


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dest",
        help=f"local folder or s3://bucket/prefix (default: $XVIEW2_DEST or {DEFAULT_DEST})",
    )
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr")


def add_catalog(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalog",
        action="append",
        default=[],
        metavar="FILE",
        help='JSON {"<file>": {"size": N, "sha1": "...", "md5": "..."}} adding to or '
        "overriding the built-in catalog (repeatable; default: $XVIEW2_CATALOG)",
    )


def add_download_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", nargs="*", metavar="URL", help="signed download links")
    p.add_argument(
        "--links",
        metavar="FILE",
        help="file of links (URL per line, name=URL, "
        "JSON object or Python dict); - reads standard input",
    )
    p.add_argument(
        "--connections",
        type=int,
        help=f"ranged connections per file (default: $XVIEW2_CONNECTIONS or {DEFAULT_CONNECTIONS})",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help=f"connections across all files (default: $XVIEW2_MAX_CONNECTIONS or "
        f"{DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--memory-mb",
        type=int,
        help=f"buffer memory budget in MB (default: $XVIEW2_MEMORY_MB or {DEFAULT_MEMORY_MB})",
    )
    p.add_argument(
        "--part-size-mb",
        type=float,
        help="size of each ranged request and upload part, in MiB (default: 4 local, up to "
        "16 S3, smaller when the memory budget must hold a part for every connection; grown "
        "to fit the store's part limit; a resumed upload keeps its own)",
    )
    p.add_argument("--force", action="store_true", help="download even if already verified")
    p.add_argument(
        "--all-digests",
        action="store_true",
        help="compute every digest the catalog knows (default: SHA-1 only)",
    )
    p.add_argument(
        "--no-prompt",
        action="store_true",
        help="never ask for fresh links; exit 3 when links expire",
    )
    p.add_argument(
        "--limit-rate",
        metavar="RATE",
        help="cap the speed of the whole run, all files and connections together: bytes "
        "per second, e.g. 500K or 10M (default: $XVIEW2_LIMIT_RATE or no cap)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="probe every link and show what would be skipped, resumed or fetched and the "
        "space needed; fetch nothing (exits as the run would for expired or refused links)",
    )


def add_extract_options(p: argparse.ArgumentParser) -> None:
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


def links_of(args: argparse.Namespace) -> list[Link]:
    """The links given as arguments, in ``--links FILE``, or on standard input."""
    stdin_text = sys.stdin.read() if args.links == "-" else None
    links = read_links(args.urls, args.links, stdin_text)
    if not links:
        raise UsageError("no links given", hint="pass URLs or --links FILE")
    return links


def part_size_of(args: argparse.Namespace) -> int | None:
    if args.part_size_mb is None:
        return None
    if args.part_size_mb <= 0:
        raise UsageError(f"--part-size-mb must be positive (got {args.part_size_mb:g})")
    return int(args.part_size_mb * MiB)


def download_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The download flags as the keyword arguments of ``download`` and ``ingest``."""
    return {
        "catalog_files": args.catalog,
        "connections": args.connections,
        "max_connections": args.max_connections,
        "memory_mb": args.memory_mb,
        "part_size": part_size_of(args),
        "endpoint_url": args.endpoint_url,
        "force": args.force,
        "all_digests": args.all_digests,
        "limit_rate": args.limit_rate,
    }


def wants_view(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() and not args.quiet


def prompts(args: argparse.Namespace) -> bool:
    """Whether fresh links may be asked for at the terminal."""
    return sys.stdin.isatty() and sys.stderr.isatty() and not args.no_prompt
