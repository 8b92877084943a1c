"""The ``xview2`` command: argument parsing, progress drawing, errors to exit codes.

Everything else lives in the library; this module only translates.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, api
from .config import DEFAULT_MEMORY_MB
from .errors import ExitCode, UsageError, XView2Error
from .events import Event
from .links import Link, parse_links_text, read_links
from .reports import DownloadReport
from .transfer.stopping import graceful_signals

log = logging.getLogger(__name__)

EXIT_CODES = """exit codes:
  0    every file verified and published
  1    a failure (checksum mismatch, server or destination error, ...)
  2    usage error (bad arguments, unreadable links or catalog file)
  3    some links had expired: the message lists the files that need fresh links
  130  interrupted; finished bytes are kept and the next run resumes
"""


class ProgressView:
    """Per-file and total bars with rate and ETA, drawn on stderr when it is a TTY."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[tuple[str, str], Any] = {}
        self._total: Any = None
        self._stage = "download"

    def __enter__(self) -> ProgressView:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}", justify="left"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[note]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._total = self._progress.add_task("[bold]total", total=0, note="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: Event) -> None:
        if self._progress is None:
            return
        p = self._progress
        if event.kind == "stage" and event.name in ("download", "extract", "index"):
            self._stage = event.name
            return
        key = (self._stage, event.name)
        task = self._tasks.get(key)
        if task is None:
            label = event.name if self._stage == "download" else f"{self._stage} {event.name}"
            task = self._tasks[key] = p.add_task(label, total=None, note="")
        if event.kind == "probed":
            p.update(task, total=event.total, note=event.detail)
            if event.total:
                self._grow_total(event.total)
        elif event.kind == "started":
            p.update(task, completed=event.done)
            p.advance(self._total, event.done)
        elif event.kind == "bytes":
            if event.total is not None and p.tasks[task].total is None:
                p.update(task, total=event.total)
            p.advance(task, event.done)
            if self._stage == "download":
                p.advance(self._total, event.done)
        elif event.kind == "retry":
            p.update(task, note=f"[yellow]{event.detail}")
        elif event.kind in ("verifying", "published", "failed", "skipped"):
            note = {
                "verifying": "verifying",
                "published": f"[green]{event.detail}",
                "failed": "[red]failed",
                "skipped": "[green]already verified",
            }[event.kind]
            if event.kind == "skipped" and event.total:
                p.update(task, total=event.total, completed=event.total)
            p.update(task, note=note)
        elif event.kind == "stage":
            p.update(task, note=event.detail)

    def _grow_total(self, n: int) -> None:
        current = self._progress.tasks[self._total].total or 0
        self._progress.update(self._total, total=current + n)


def _err(message: str) -> None:
    sys.stderr.write(message.rstrip() + "\n")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dest", help="local folder or s3://bucket/prefix (default: $XVIEW2_DEST or ./data/xview2)"
    )
    p.add_argument("--endpoint-url", help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL)")
    p.add_argument(
        "--catalog",
        action="append",
        default=[],
        metavar="FILE",
        help='JSON {"<file>": {"size": N, "sha1": "...", "md5": "..."}} adding to or '
        "overriding the built-in catalog (repeatable; default: $XVIEW2_CATALOG)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, no summary")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log to stderr")


def _add_download_options(p: argparse.ArgumentParser) -> None:
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
        help="ranged connections per file (default: $XVIEW2_CONNECTIONS or 8)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help="connections across all files (default: $XVIEW2_MAX_CONNECTIONS or 32)",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xview2",
        description="Verified, resumable, parallel ingest of the xView2 (xBD) dataset.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "download",
        help="download links into DEST, verified",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_download_options(p)
    _add_common(p)

    p = sub.add_parser("status", help="what is verified, partial or missing at DEST")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    _add_common(p)

    p = sub.add_parser("clean", help="abort unfinished uploads and drop partial files")
    p.add_argument("name", nargs="?", help="only this file")
    _add_common(p)

    from .cli_dataset import add_dataset_commands

    add_dataset_commands(sub, _add_common, _add_download_options)
    return parser


def _links(args: argparse.Namespace) -> list[Link]:
    stdin_text = sys.stdin.read() if args.links == "-" else None
    links = read_links(args.urls, args.links, stdin_text)
    if not links:
        raise UsageError("no links given", hint="pass URLs or --links FILE")
    return links


def _report_failures(report: DownloadReport) -> None:
    for result in report.files:
        if result.error is not None and result.status == "failed":
            _err(f"error: {result.error}")
    if report.expired:
        names = ", ".join(f.name for f in report.expired)
        _err(
            f"{len(report.expired)} file(s) need fresh links: {names}. Open the xview2.org "
            "download page and run again with the new links; finished bytes are kept."
        )


def _read_hidden_lines(prompt: str) -> list[str]:
    """Lines up to an empty one, without echo: pasted links carry secrets.

    Echo is turned off before the prompt appears, so a quick paste is never shown.
    """
    import termios

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    hidden = list(saved)
    hidden[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSADRAIN, hidden)
    lines: list[str] = []
    try:
        _err(prompt)
        for line in sys.stdin:
            if not line.strip():
                break
            lines.append(line)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return lines


def _ask_fresh_links(expired: Sequence[str]) -> list[Link]:
    _err(f"links expired for: {', '.join(expired)}")
    lines = _read_hidden_lines(
        "paste fresh links (or a links file path), then an empty line; empty to stop:"
    )
    _err(f"({sum(1 for x in lines if x.strip())} line(s) read)")
    text = "".join(lines).strip()
    if not text:
        return []
    if "://" not in text:
        return read_links(links_file=text)
    return parse_links_text(text, "<pasted>")


def run_download(
    args: argparse.Namespace,
    links: list[Link],
    view: Callable[[Event], None],
) -> DownloadReport:
    def once(batch: list[Link]) -> DownloadReport:
        return api.download(
            batch,
            args.dest,
            catalog_files=args.catalog,
            connections=args.connections,
            max_connections=args.max_connections,
            memory_mb=args.memory_mb,
            part_size=int(args.part_size_mb * (1 << 20)) if args.part_size_mb else None,
            endpoint_url=args.endpoint_url,
            progress=view,
            force=args.force,
            all_digests=args.all_digests,
        )

    report = once(links)
    interactive = sys.stdin.isatty() and sys.stderr.isatty() and not args.no_prompt
    while report.expired and interactive:
        wanted = {f.name for f in report.expired}
        fresh = [link for link in _ask_fresh_links(sorted(wanted)) if link.name in wanted]
        if not fresh:
            break
        again = {f.name: f for f in once(fresh).files}
        report = DownloadReport([again.get(f.name, f) for f in report.files], report.dest)
    return report


def cmd_download(args: argparse.Namespace) -> int:
    links = _links(args)
    show = sys.stderr.isatty() and not args.quiet
    with ProgressView(show) as view:
        report = run_download(args, links, view)
    _report_failures(report)
    if not args.quiet:
        _err(report.summary())
    return report.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    report = api.status(args.dest, catalog_files=args.catalog, endpoint_url=args.endpoint_url)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"xview2 at {report.dest}")
    table.add_column("file", no_wrap=True)
    for col in ("state", "size", "sha1", "verified at"):
        table.add_column(col)
    colors = {"verified": "green", "unverified": "yellow", "partial": "cyan", "missing": "dim"}
    for f in report.files:
        size = f"{f.size:,}" if f.size else (f"{f.bytes_done:,} so far" if f.bytes_done else "")
        table.add_row(
            f.name, f"[{colors[f.state]}]{f.state}", size, (f.sha1 or "")[:12], f.verified_at or ""
        )
    console = Console()
    console.print(table)
    if report.pending:
        console.print(f"{len(report.pending)} unfinished upload(s); `xview2 clean` aborts them:")
        for p in report.pending:
            console.print(f"  {p.name}: {p.parts_done} parts, {p.bytes_done:,} bytes ({p.detail})")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    n = api.clean(args.dest, args.name, endpoint_url=args.endpoint_url)
    if not args.quiet:
        _err(f"discarded {n} unfinished upload(s)")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "download": cmd_download,
    "status": cmd_status,
    "clean": cmd_clean,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("xview2_ingest")
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if args.verbose > 1 else logging.INFO)
    from .cli_dataset import DATASET_COMMANDS

    command = {**COMMANDS, **DATASET_COMMANDS}[args.command]
    try:
        with graceful_signals():  # first Ctrl-C/SIGTERM stops cleanly, a second at once
            return command(args)
    except XView2Error as exc:
        _err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted; finished bytes are kept, run again to resume")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.USAGE


if __name__ == "__main__":
    sys.exit(main())
