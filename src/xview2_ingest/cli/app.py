"""The parser, ``main``, and errors to exit codes.

Each command group module (:mod:`.transfer`, :mod:`.dataset`, :mod:`.completion`)
registers its subcommands through :func:`.options.add_command`, each with a handler that
takes the parsed arguments and returns an exit code.  Every error that ends a command,
the parser's own included, exits with its :class:`~xview2_ingest.errors.ExitCode` and,
under ``--json``, also writes a final JSON error line on stdout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from xview2_ingest import __version__, graceful_signals
from xview2_ingest.errors import EXIT_CODES_HELP, ExitCode, UsageError, XView2Error

from . import completion, dataset, prepare, transfer, verify
from .jsonlines import JsonLines
from .options import HelpFormatter
from .ui import err


class ArgumentsError(Exception):
    """The parser refused the command line (unknown option, bad value, ...)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises instead of exiting, so that ``main`` reports a
    usage error like any other (with a JSON line under ``--json``)."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(self, message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="xview2",
        description="Verified, resumable, parallel ingest of the xView2 (xBD) dataset.",
        epilog=EXIT_CODES_HELP,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    transfer.register(sub)
    dataset.register(sub)
    prepare.register(sub)
    verify.register(sub)
    completion.register(sub, build_parser)
    return parser


def _logging(verbose: int) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("xview2_ingest")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xview2`` command; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except ArgumentsError as exc:
        exc.parser.print_usage(sys.stderr)
        err(f"{exc.parser.prog}: error: {exc}")
        if "--json" in argv:
            JsonLines(_command_of(argv) or "").error(UsageError(str(exc)), ExitCode.USAGE)
        return ExitCode.USAGE
    _logging(args.verbose)
    code: int
    try:
        with graceful_signals():  # a first Ctrl-C or SIGTERM stops cleanly, a second at once
            return int(args.handler(args))
    except XView2Error as exc:
        err(f"error: {exc}")
        code, error = int(exc.exit_code), exc
    except KeyboardInterrupt as exc:
        err("interrupted; finished bytes are kept, run again to resume")
        code, error = ExitCode.INTERRUPTED, exc  # type: ignore[assignment]
    except BrokenPipeError:
        return ExitCode.FAILURE
    if args.json:
        JsonLines(args.command).error(error, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
