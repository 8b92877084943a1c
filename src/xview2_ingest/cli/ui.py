"""What the command draws: the progress view on stderr, messages, failure lists, and
the hidden prompt for fresh links."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from xview2_ingest import Link, parse_links_text, read_links
from xview2_ingest.events import Event
from xview2_ingest.reports import DownloadReport, Report


def err(message: str) -> None:
    """A line on stderr (human output never goes to stdout)."""
    sys.stderr.write(message.rstrip() + "\n")


class ProgressView:
    """Per-file and total bars with rate and ETA, drawn on stderr when it is a TTY."""

    def __init__(self, enabled: bool, *, notices: bool = True):
        self.enabled = enabled
        self.notices = notices
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
        if event.kind == "info":
            self._info(event.detail)
            return
        if self._progress is None:
            return
        if event.kind == "stage" and event.name in ("download", "extract", "index"):
            self._stage = event.name
            return
        self._draw(event, self._task(event.name))

    def _info(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        elif self.notices:
            err(text)

    def _task(self, name: str) -> Any:
        key = (self._stage, name)
        task = self._tasks.get(key)
        if task is None:
            label = name if self._stage == "download" else f"{self._stage} {name}"
            task = self._tasks[key] = self._progress.add_task(label, total=None, note="")
        return task

    def _draw(self, event: Event, task: Any) -> None:
        p = self._progress
        if event.kind == "probed":
            p.update(task, total=event.total, note=event.detail)
            if event.total:
                current = p.tasks[self._total].total or 0
                p.update(self._total, total=current + event.total)
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
        elif event.kind in _NOTES:
            if event.kind == "skipped" and event.total:
                p.update(task, total=event.total, completed=event.total)
            p.update(task, note=_NOTES[event.kind].format(event.detail))
        elif event.kind == "stage":
            p.update(task, note=event.detail)


_NOTES = {
    "verifying": "verifying",
    "published": "[green]{}",
    "failed": "[red]failed",
    "skipped": "[green]already verified",
}


def show_failures(report: Report) -> None:
    """Every failed item's error, one line each (the report's items carry ``error``)."""
    items = getattr(report, "files", None) or getattr(report, "archives", None) or []
    for item in items:
        error = getattr(item, "error", None)
        if error is not None and getattr(item, "status", "failed") == "failed":
            err(f"error: {error}")


def show_expired(report: DownloadReport) -> None:
    if report.expired:
        names = ", ".join(f.name for f in report.expired)
        err(
            f"{len(report.expired)} file(s) need fresh links: {names}. Open the xview2.org "
            "download page and run again with the new links; finished bytes are kept."
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
