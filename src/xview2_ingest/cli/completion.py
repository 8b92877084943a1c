"""``xview2 completion bash|zsh|fish``: a completion script made from the parser itself.

The script is static (written once, e.g. into bash-completion's folder), so pressing TAB
never starts Python; shtab turns the argparse parser into it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .options import add_command

SHELLS = ("bash", "zsh", "fish")
INSTALL = {
    "bash": "xview2 completion bash > ~/.local/share/bash-completion/completions/xview2",
    "zsh": "xview2 completion zsh > ~/.zfunc/_xview2   # fpath+=(~/.zfunc) in .zshrc",
    "fish": "xview2 completion fish > ~/.config/fish/completions/xview2.fish",
}


def register(sub: Any, parser: Callable[[], argparse.ArgumentParser]) -> None:
    """``parser`` builds the whole ``xview2`` parser, to be turned into the script."""
    p = add_command(
        sub,
        "completion",
        "print a shell completion script (bash, zsh, fish)",
        "Print the completion script of xview2 for a shell on stdout. Install it with:\n"
        + "".join(f"  {INSTALL[s]}\n" for s in SHELLS)
        + "or, for the current bash session only: source <(xview2 completion bash)",
        lambda args: cmd_completion(args, parser),
    )
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    p.set_defaults(json=False, quiet=False, verbose=0)


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    import shtab

    return shtab.complete(parser, shell=shell)


def cmd_completion(args: argparse.Namespace, parser: Callable[[], argparse.ArgumentParser]) -> int:
    sys.stdout.write(script(args.shell, parser()))
    return 0
