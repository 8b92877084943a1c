"""The parser, ``main``, and errors to exit codes.

Each command group module (:mod:`.transfer`, :mod:`.dataset`) registers its subcommands
through :func:`.options.add_command`, each with a handler that takes the parsed arguments
and returns an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from xview2_ingest import __version__
from xview2_ingest.errors import EXIT_CODES_HELP, ExitCode, XView2Error

from . import dataset, transfer, verify
from .ui import err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xview2",
        description="Verified, resumable, parallel ingest of the xView2 (xBD) dataset.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    transfer.register(sub)
    dataset.register(sub)
    verify.register(sub)
    return parser


def _logging(verbose: int) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("xview2_ingest")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xview2`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    _logging(args.verbose)
    try:
        return int(args.handler(args))
    except XView2Error as exc:
        err(f"error: {exc}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        err("interrupted; finished bytes are kept, run again to resume")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.USAGE


if __name__ == "__main__":
    sys.exit(main())
