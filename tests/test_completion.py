"""``xview2 completion``: the scripts load in their shells and complete from the parser."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from xview2_ingest.cli.app import build_parser


def script(shell: str) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "xview2_ingest.cli", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return run.stdout


def subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)  # type: ignore[union-attr]


BASH_COMPLETE = r"""
source "$1"
complete -p xview2
fn=$(complete -p xview2 | sed -E 's/.* -F ([^ ]+) .*/\1/')
ask() {  # ask WORD... : complete the last word of "xview2 WORD..."
    COMP_WORDS=(xview2 "$@"); COMP_CWORD=$#; COMP_LINE="xview2 $*"; COMP_POINT=${#COMP_LINE}
    COMPREPLY=(); "$fn" xview2 "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    echo "${COMPREPLY[*]}"
}
ask ""
ask do
ask download --max
ask completion ""
ask stats --format ""
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_script_loads_and_completes_subcommands_and_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "xview2.bash"
    path.write_text(script("bash"))
    run = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", BASH_COMPLETE, "bash", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    registered, top, do, max_, shells, formats = run.stdout.splitlines()
    assert registered.startswith("complete ") and registered.endswith(" xview2")
    assert top.split() == subcommands()
    assert "completion" in top.split() and "download" in top.split()
    assert do.split() == ["download"]
    assert max_.split() == ["--max-connections"]
    assert shells.split() == ["bash", "zsh", "fish"]
    assert formats.split() == ["table", "csv"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
def test_zsh_script_parses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "_xview2"
    path.write_text(script("zsh"))
    assert path.read_text().startswith("#compdef xview2")
    run = subprocess.run(["zsh", "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which("fish") is None, reason="needs fish")
def test_fish_script_completes_subcommands_and_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "xview2.fish"
    path.write_text(script("fish"))

    def complete(line: str) -> list[str]:
        run = subprocess.run(
            ["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        return [x.split("\t")[0] for x in run.stdout.splitlines()]

    assert sorted(complete("xview2 ")) == sorted(subcommands())
    assert complete("xview2 download --max") == ["--max-connections"]


def test_every_subcommand_and_option_is_in_each_script() -> None:
    parser = build_parser()
    for shell in ("bash", "zsh", "fish"):
        text = script(shell)
        for name in subcommands():
            assert name in text, (shell, name)
        for option in ("--dest", "--json", "--links", "--catalog", "--part-size-mb"):
            assert option in text, (shell, option)
    assert parser.prog == "xview2"
