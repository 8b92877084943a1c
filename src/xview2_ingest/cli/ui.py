"""What the command draws: the progress view on stderr, messages, failure lists, and
the hidden prompt for fresh links."""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from xview2_ingest import Link, parse_links_text, read_links
from xview2_ingest.events import Event
from xview2_ingest.reports import DownloadReport, Report

from .progress import Row, RowsView


def err(message: str) -> None:
    """A message on stderr (human output never goes to stdout), wrapped at word
    boundaries to the terminal's width when stderr is one."""
    text = message.rstrip()
    if sys.stderr.isatty():
        width = shutil.get_terminal_size().columns
        text = "\n".join(
            textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False)
            for line in text.splitlines()
        )
    sys.stderr.write(text + "\n")


PIPELINE_STAGES = ("download", "extract", "targets", "index", "pixels", "splits", "layout")
"""The stages of ``ingest``, in order: rows of a later stage are labelled with its name."""


class ProgressView:
    """Per-file rows and a total with rate and time left, drawn on stderr when it is a
    TTY (:mod:`.progress` lays them out for the terminal's width)."""

    def __init__(self, enabled: bool, *, notices: bool = True):
        self.enabled = enabled
        self.notices = notices
        self._live: Any = None
        self._view = RowsView()
        self._rows: dict[tuple[str, str], Row] = {}
        self._total = Row("total", total=0, bold=True)
        self._stage = "download"

    def __enter__(self) -> ProgressView:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._view.rows.append(self._total)
            self._live = Live(
                self._view,
                console=Console(stderr=True),
                refresh_per_second=4,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            with self._view.lock:
                for row in [self._total, *self._rows.values()]:
                    row.finished |= bool(row.total) and row.completed >= (row.total or 0)
            self._live.stop()
            self._live = None

    def settle(self, report: Report) -> None:
        """Final notes from the report: a stopped run's rows say "interrupted"."""
        for item in getattr(report, "files", None) or []:
            row = self._rows.get(("download", item.name))
            if row is not None and item.status in _FINAL_NOTES:
                row.note, row.note_style = _FINAL_NOTES[item.status]
                row.finished = True

    def __call__(self, event: Event) -> None:
        if event.kind == "info":
            self._info(event.detail)
            return
        if self._live is None:
            return
        if event.kind == "stage" and event.name in PIPELINE_STAGES:
            self._stage = event.name
            return
        with self._view.lock:
            self._draw(event, self._row(event.name))

    def _info(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        elif self.notices:
            err(text)

    def _row(self, name: str) -> Row:
        key = (self._stage, name)
        row = self._rows.get(key)
        if row is None:
            label = name if self._stage == "download" else f"{self._stage} {name}"
            row = self._rows[key] = Row(label)
            self._view.rows.append(row)
        return row

    def _draw(self, event: Event, row: Row) -> None:
        total = self._total
        if event.kind == "probed":
            row.total, row.note, row.note_style = event.total, event.detail, "dim"
            if event.total:
                total.total = (total.total or 0) + event.total
        elif event.kind == "started":
            row.completed = event.done
            if event.total is not None and row.total is None:
                row.total = event.total
            if self._stage == "download":
                total.completed += event.done
        elif event.kind == "bytes":
            if event.total is not None and row.total is None:
                row.total = event.total
            row.completed += event.done
            row.rate.add(event.done)
            if self._stage == "download":
                total.completed += event.done
                total.rate.add(event.done)
        elif event.kind == "retry":
            row.note, row.note_style = event.detail, "yellow"
        elif event.kind in _NOTES:
            if event.kind in ("skipped", "published") and event.total:
                row.total = event.total
                row.completed = max(row.completed, event.done, event.total)
            note, row.note_style = _NOTES[event.kind]
            row.note = (
                event.detail if event.kind in ("published", "skipped") and event.detail else note
            )
            row.finished = event.kind != "verifying"
            if self._stage == "download":
                downloads = [r for (stage, _), r in self._rows.items() if stage == "download"]
                total.finished = all(r.finished for r in downloads)
        elif event.kind == "stage":
            row.note, row.note_style = event.detail, ""


_NOTES = {
    "verifying": ("verifying", ""),
    "published": ("done", "green"),
    "failed": ("failed", "red"),
    "skipped": ("already verified", "green"),
}
_FINAL_NOTES = {
    "verified": ("verified", "green"),
    "unverified": ("unverified", "yellow"),
    "interrupted": ("interrupted", "yellow"),
    "expired": ("link expired", "yellow"),
    "failed": ("failed", "red"),
}


def show_failures(report: Report) -> None:
    """Every failed item's error, one line each; one error shared by several files (a
    destination that cannot be written, say) is said once, with the files named."""
    items = getattr(report, "files", None) or getattr(report, "archives", None) or []
    shared: dict[tuple[str, str, str | None], list[str]] = {}
    for item in items:
        error = getattr(item, "error", None)
        if error is not None and getattr(item, "status", "failed") == "failed":
            key = (type(error).__name__, error.message, error.hint)
            shared.setdefault(key, []).append(error.file or item.name)
    for (_, message, hint), files in shared.items():
        said = f"{message} ({hint})" if hint else message
        if len(files) == 1:
            err(f"error: {files[0]}: {said}")
        else:
            err(f"error: {said}; {len(files)} files: {', '.join(files)}")


def show_expired(report: DownloadReport) -> None:
    if report.expired:
        names = ", ".join(f.name for f in report.expired)
        err(
            f"{len(report.expired)} file(s) need fresh links: {names}. Open the xview2.org "
            "download page and run again with the new links; finished bytes are kept."
        )


def show_unverified(report: DownloadReport) -> None:
    """Files in no catalog: only their size was checked.  Said, since exit 0 covers them."""
    if report.unverified:
        names = ", ".join(f.name for f in report.unverified)
        err(
            f"{len(report.unverified)} file(s) in no catalog, only their size was checked "
            f"(unverified): {names}. To verify them, pass --catalog FILE with their SHA-1."
        )


def read_hidden_lines(prompt: str) -> list[str]:
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
        err(prompt)
        for line in sys.stdin:
            if not line.strip():
                break
            lines.append(line)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return lines


def ask_fresh_links(expired: Sequence[str]) -> list[Link]:
    """Ask at the terminal for fresh links (pasted, or a links file path)."""
    err(f"links expired for: {', '.join(expired)}")
    lines = read_hidden_lines(
        "paste fresh links (or a links file path), then an empty line; empty to stop:"
    )
    err(f"({sum(1 for x in lines if x.strip())} line(s) read)")
    text = "".join(lines).strip()
    if not text:
        return []
    if "://" not in text:
        return read_links(links_file=text)
    return parse_links_text(text, "<pasted>")
