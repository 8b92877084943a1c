"""Options shared by several commands, defined once, and their translation into the
plain values the library takes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xview2_ingest import Link, read_links
from xview2_ingest.errors import EXIT_CODES_HELP, DestinationError, UsageError
from xview2_ingest.settings import (
    CONNECTIONS,
    DEFAULT_DEST,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MEMORY_MB,
    MAX_CONNECTIONS,
    MAX_PART_SIZE_MB,
    dest_setting,
)

Handler = Callable[[argparse.Namespace], int]
MiB = 1 << 20

FILE = {
    "bash": "_shtab_compgen_files",
    "zsh": "_files",
    "tcsh": "f",
    "fish": "(__fish_complete_path (commandline -ct))",
}
"""Shell completion of file names for an option (``action.complete``, read by shtab)."""
DIRECTORY = {
    "bash": "_shtab_compgen_dirs",
    "zsh": "_files -/",
    "tcsh": "d",
    "fish": "(__fish_complete_directories)",
}


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description to the terminal; keeps indented lines (the
    exit codes, commands) as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        for block in text.split("\n\n"):
            if block.startswith(" ") or "\n " in block or block.startswith("exit codes:"):
                out.append("".join(indent + line + "\n" for line in block.splitlines()))
            else:
                out.append(super()._fill_text(block, width, indent) + "\n")
        return "\n".join(out).rstrip("\n")


def add_command(sub: Any, name: str, summary: str, description: str, handler: Handler) -> Any:
    """A subcommand with its one-line summary, its description and the exit codes."""
    p = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=EXIT_CODES_HELP,
        formatter_class=HelpFormatter,
    )
    p.set_defaults(handler=handler)
    return p


def whole_number(minimum: int = 1) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (exit 2 otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum} (got {value})")
        return value

    return parse


def part_size_mb(text: str) -> float:
    """An argparse type: a part size in MiB, above 0 and at most S3's 5 GiB part."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= MAX_PART_SIZE_MB:
        raise argparse.ArgumentTypeError(
            f"must be above 0 and at most {MAX_PART_SIZE_MB} (5 GiB, the largest part S3 "
            f"accepts) (got {text})"
        )
    return value


def add_dest(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dest",
        metavar="DEST",
        help="local folder, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix "
        f"(default: $XVIEW2_DEST or {DEFAULT_DEST})",
    ).complete = DIRECTORY  # type: ignore[attr-defined]
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="object store endpoint (default: $AWS_ENDPOINT_URL for S3, "
        "$STORAGE_EMULATOR_HOST for GCS, the connection string's for Azure)",
    )


def add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="newline-delimited JSON on stdout: progress events, then one final report "
        '(or error) object marked "final": true; human output stays on stderr',
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr")


def add_common(p: argparse.ArgumentParser) -> None:
    """``--dest``, ``--endpoint-url``, ``--json``, ``--quiet``, ``--verbose``."""
    add_dest(p)
    add_output(p)


def add_catalog(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalog",
        action="append",
        default=[],
        metavar="FILE",
        help='JSON {"<file>": {"size": N, "sha1": "...", "md5": "..."}} adding to or '
        "overriding the built-in catalog (repeatable; default: $XVIEW2_CATALOG)",
    ).complete = FILE  # type: ignore[attr-defined]


def add_download_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("urls", nargs="*", metavar="URL", help="signed download links")
    p.add_argument(
        "--links",
        metavar="FILE",
        help="file of links (URL per line, name=URL, "
        "JSON object or Python dict); - reads standard input",
    ).complete = FILE  # type: ignore[attr-defined]
    p.add_argument(
        "--connections",
        type=whole_number(),
        metavar="N",
        help="ranged connections read at once per file, each with one more for the request "
        "it sends ahead over a WAN (default: $XVIEW2_CONNECTIONS, else tuned per file: more "
        "while the rate keeps rising, within --max-connections and the memory budget)",
    )
    p.add_argument(
        "--max-connections",
        type=whole_number(),
        metavar="N",
        help=f"connections across all files (default: $XVIEW2_MAX_CONNECTIONS or "
        f"{DEFAULT_MAX_CONNECTIONS})",
    )
    p.add_argument(
        "--memory-mb",
        type=whole_number(),
        metavar="MB",
        help=f"buffer memory budget in MB (default: $XVIEW2_MEMORY_MB or {DEFAULT_MEMORY_MB})",
    )
    p.add_argument(
        "--part-size-mb",
        type=part_size_mb,
        metavar="MIB",
        help="size of each ranged request and upload part, in MiB (default: 4 local, 8 S3, "
        "16 Azure, 16-32 GCS; smaller when the memory budget must hold a part for every "
        "connection; grown to fit the store's part limit; a resumed upload keeps its own)",
    )
    p.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="PEM file of CA certificates for HTTPS links (default: $XVIEW2_CA_BUNDLE, "
        "$REQUESTS_CA_BUNDLE, $CURL_CA_BUNDLE, $SSL_CERT_FILE, else the system's)",
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
    p.add_argument(
        "--workers",
        type=whole_number(),
        default=8,
        metavar="N",
        help="parallel member writers (default 8)",
    )


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
    return int(args.part_size_mb * MiB)


def capped_notes(args: argparse.Namespace) -> list[str]:
    """What the flags ask for that the run will not do as asked, said up front."""
    per_file = CONNECTIONS.resolve_optional(args.connections)
    in_all = MAX_CONNECTIONS.resolve(args.max_connections)
    notes = []
    if per_file is not None and per_file > in_all:
        notes.append(
            f"note: {per_file} connections per file (--connections) is more than "
            f"{in_all} in all (--max-connections): at most {in_all} are used"
        )
    return notes


def check_destination(args: argparse.Namespace, *, creates: bool) -> None:
    """Refuse a local destination that cannot work, once, before any file is tried.

    ``creates``: the command makes the folder when it is missing (download, ingest);
    otherwise a missing folder is a mistake (a typo in ``--dest``) and exit 2.
    """
    text = dest_setting(args.dest)  # also refuses a URL that names no store
    if "://" in text:
        return
    source = (
        "--dest"
        if args.dest is not None
        else ("XVIEW2_DEST" if os.environ.get("XVIEW2_DEST") else "the default destination")
    )
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(
                f"{source} {text} is a file, not a folder", hint="give a folder for DEST"
            )
        return
    if not creates:
        raise UsageError(
            f"{source} {text} does not exist",
            hint=f"check the name; `xview2 download --dest {text} ...` creates it",
        )
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise UsageError(
            f"{source} {text} cannot be created: {parent} is a file, not a folder",
            hint="give a folder for DEST",
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DestinationError(
            f"cannot create the destination folder {text}: permission denied in {parent}",
            hint="choose a destination you can write to",
        )


def download_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The download flags as the keyword arguments of ``download`` and ``ingest``."""
    return {
        "catalog_files": args.catalog,
        "connections": args.connections,
        "max_connections": args.max_connections,
        "memory_mb": args.memory_mb,
        "part_size": part_size_of(args),
        "endpoint_url": args.endpoint_url,
        "ca_bundle": args.ca_bundle,
        "force": args.force,
        "all_digests": args.all_digests,
        "limit_rate": args.limit_rate,
    }


def wants_view(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() and not args.quiet


def prompts(args: argparse.Namespace) -> bool:
    """Whether fresh links may be asked for at the terminal."""
    return sys.stdin.isatty() and sys.stderr.isatty() and not args.no_prompt


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, e.g. 0.1 (got {text})")
    return value


def add_include(p: argparse.ArgumentParser, choices: tuple[str, ...], help_text: str) -> None:
    p.add_argument(
        "--include", action="append", default=[], choices=choices, metavar="SPLIT", help=help_text
    )


def add_split_options(p: argparse.ArgumentParser, default_fraction: str) -> None:
    """``--val-fraction F | --folds K``, ``--val-fold k``, ``--seed N``."""
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--val-fraction",
        type=fraction,
        metavar="F",
        help=f"share of each disaster's pairs held out for val ({default_fraction})",
    )
    how.add_argument(
        "--folds", type=whole_number(2), metavar="K", help="K folds instead, one of them val"
    )
    p.add_argument(
        "--val-fold", type=whole_number(0), metavar="k", help="the fold that is val (default 0)"
    )
    p.add_argument(
        "--seed", type=whole_number(0), default=0, metavar="N", help="random seed (default 0)"
    )


def split_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The split flags as keyword arguments of ``make_splits`` and ``ingest``."""
    if args.val_fold is not None and args.folds is None:
        raise UsageError("--val-fold needs --folds", hint="add e.g. --folds 5")
    if args.folds is not None and (args.val_fold or 0) >= args.folds:
        raise UsageError(
            f"--val-fold {args.val_fold} is not one of the {args.folds} folds (0 to "
            f"{args.folds - 1})",
            hint=f"pass --val-fold between 0 and {args.folds - 1}",
        )
    return {"folds": args.folds, "val_fold": args.val_fold or 0, "seed": args.seed}
