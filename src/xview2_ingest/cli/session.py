"""One command run's output: the progress view on stderr, ``--json`` lines on stdout, the
summary, and the exit code -- the same for every command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from xview2_ingest.events import Event
from xview2_ingest.reports import Report

from .jsonlines import JsonLines
from .options import wants_view
from .ui import ProgressView, err


class Session:
    """``with Session(args) as run: report = api.x(..., progress=run.progress)``, then
    ``return run.finish(report)``."""

    def __init__(self, args: argparse.Namespace, *, view: bool = True):
        self.args = args
        self.quiet: bool = args.quiet
        self.json = JsonLines(args.command) if args.json else None
        self.view = ProgressView(view and wants_view(args), notices=not args.quiet)

    def __enter__(self) -> Session:
        self.view.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.view.__exit__(*exc)

    def progress(self, event: Event) -> None:
        self.view(event)
        if self.json is not None:
            self.json.event(event)

    def note(self, text: str) -> None:
        """A notice for people (stderr), and for scripts as an ``info`` event."""
        self.progress(Event("info", self.args.command, detail=text))

    def finish(
        self,
        report: Report,
        show: Callable[[], None] | None = None,
        **extra: Any,
    ) -> int:
        """Settle the view, print the failures (``show``) and the summary, write the
        final JSON line; return the exit code."""
        self.view.settle(report)
        self.view.__exit__()
        if show is not None:
            show()
        if not self.quiet:
            err(report.summary())
        if self.json is not None:
            self.json.report(report, **extra)
        return int(report.exit_code)
