"""The xview2 command as a user runs it: a subprocess, exit codes, stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xview2_ingest.demo.server import SignedLinkServer


def xview2(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "xview2_ingest.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture()
def write_catalog(catalog_for):  # type: ignore[no-untyped-def]
    """Writes a catalog file of the true digests of the archives in a folder."""
    return lambda root, path: _write_catalog(catalog_for(root), root, path)


def _write_catalog(cat, root: Path, path: Path) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(
        json.dumps(
            {
                n: {"size": e.size, "sha1": e.sha1}
                for n, e in cat.items()
                if n.endswith(".tar.gz") and (root / n).exists()
            }
        )
    )
    return path


def test_download_links_file_then_status(
    server: SignedLinkServer, dataset, tmp_path: Path, write_catalog
) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    links = tmp_path / "links.txt"
    links.write_text("# pasted from the download page\n" + server.links_text())
    cat = write_catalog(root, tmp_path / "cat.json")
    dest = tmp_path / "dest"
    run = xview2("download", "--links", str(links), "--dest", str(dest), "--catalog", str(cat))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert "2 verified" in run.stderr.splitlines()[-1]
    assert "Signature" not in run.stderr
    for p in root.iterdir():
        assert (dest / p.name).read_bytes() == p.read_bytes()
    st = xview2("status", "--dest", str(dest), "--json", "--catalog", str(cat))
    assert st.returncode == 0
    states = {f["name"]: f["state"] for f in json.loads(st.stdout)["files"]}
    assert states["train_images_labels_targets.tar.gz"] == "verified"
    assert states["hold_images_labels_targets.tar.gz"] == "missing"
    again = xview2("download", "--links", str(links), "--dest", str(dest), "--catalog", str(cat))
    assert again.returncode == 0 and "2 skipped" in again.stderr and "0.0 MB" in again.stderr


def test_links_from_stdin_and_env_dest(
    server: SignedLinkServer, dataset, tmp_path: Path, write_catalog
) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    cat = write_catalog(root, tmp_path / "cat.json")
    run = xview2(
        "download",
        "--links",
        "-",
        "--catalog",
        str(cat),
        "--quiet",
        stdin=server.links_text(),
        env={"XVIEW2_DEST": str(tmp_path / "envdest")},
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert (tmp_path / "envdest" / "manifest.json").exists()


def test_expired_links_exit_3_and_list_the_files(server: SignedLinkServer, tmp_path: Path) -> None:
    links = tmp_path / "links.txt"
    links.write_text(server.links_text(ttl=-60))
    run = xview2("download", "--links", str(links), "--dest", str(tmp_path / "d"))
    assert run.returncode == 3
    assert "need fresh links" in run.stderr
    assert "train_images_labels_targets.tar.gz" in run.stderr
    assert "test_images_labels_targets.tar.gz" in run.stderr
    assert "Signature" not in run.stderr


def test_checksum_mismatch_exits_1(server: SignedLinkServer, tmp_path: Path) -> None:
    cat = tmp_path / "cat.json"
    cat.write_text(json.dumps({"test_images_labels_targets.tar.gz": {"sha1": "1" * 40}}))
    run = xview2(
        "download",
        server.url_for("test_images_labels_targets.tar.gz"),
        "--dest",
        str(tmp_path / "d"),
        "--catalog",
        str(cat),
    )
    assert run.returncode == 1
    assert "sha1 mismatch" in run.stderr and "1" * 40 in run.stderr
    assert not (tmp_path / "d" / "test_images_labels_targets.tar.gz").exists()


def test_usage_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    bad_links = tmp_path / "links.txt"
    bad_links.write_text("ftp://example.invalid/x.tar.gz\n")
    bad_cat = tmp_path / "cat.json"
    bad_cat.write_text("{oops")
    for args in (
        ["download"],
        ["download", "--links", str(bad_links)],
        ["download", "--links", str(tmp_path / "missing.txt")],
        ["download", "https://127.0.0.1:1/x.tar.gz", "--catalog", str(bad_cat)],
        ["download", "https://127.0.0.1:1/x.tar.gz", "--connections", "0"],
        ["nonsense"],
    ):
        run = xview2(*args)
        assert run.returncode == 2, (args, run.stderr)
        assert "Traceback" not in run.stderr
        assert run.stderr.strip()


def test_demo_runs_the_whole_job(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    run = xview2("demo", "--dest", str(dest), "--pairs", "6")
    assert run.returncode == 0, run.stderr
    assert "2 verified" in run.stderr and "indexed" in run.stderr
    assert "pairs" in run.stdout  # the stats table
    for name in (
        "train/images",
        "train/labels",
        "train/targets",
        "test/images",
        "index/images.parquet",
        "index/buildings.parquet",
        "manifest.json",
    ):
        assert (dest / name).exists(), name


def test_ingest_downloads_extracts_and_indexes(
    server: SignedLinkServer, dataset, tmp_path: Path, write_catalog
) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    root, stats = dataset
    links = tmp_path / "links.txt"
    links.write_text(server.links_text())
    cat = write_catalog(root, tmp_path / "cat.json")
    dest = tmp_path / "dest"
    run = xview2("ingest", "--links", str(links), "--dest", str(dest), "--catalog", str(cat))
    assert run.returncode == 0, run.stderr
    images = pq.read_table(dest / "index" / "images.parquet")
    assert images.num_rows == 2 * sum(stats.pairs.values())
    assert len(list((dest / "train" / "images").iterdir())) == 2 * stats.pairs["train"]
    csv = xview2("stats", "--dest", str(dest), "--format", "csv")
    assert csv.returncode == 0 and csv.stdout.startswith("split,")


def test_version() -> None:
    from xview2_ingest import __version__

    proc = xview2("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"xview2 {__version__}")


def catalog_commands() -> list[str]:
    """Every subcommand whose help offers --catalog."""
    listing = xview2("--help").stdout
    names = re.findall(r"^    (\w+)\s", listing, flags=re.M)
    assert {"download", "status", "extract", "ingest"} <= set(names), listing
    return [n for n in names if "--catalog" in xview2(n, "--help").stdout]


def test_every_command_with_catalog_refuses_a_missing_catalog_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nonexistent.json")
    commands = catalog_commands()
    assert {"download", "status", "extract", "ingest"} <= set(commands)
    for command in commands:
        run = xview2(command, "https://127.0.0.1:1/x.tar.gz", "--catalog", missing)
        if "unrecognized arguments" in run.stderr:  # takes no URL: try without
            run = xview2(command, "--catalog", missing, "--dest", str(tmp_path / "d"))
        assert run.returncode == 2, (command, run.stderr)
        assert "nonexistent.json" in run.stderr and "cannot read" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr


def test_every_subcommand_has_a_description_and_the_exit_codes() -> None:
    listing = xview2("--help").stdout
    for name in re.findall(r"^    (\w+)\s", listing, flags=re.M):
        text = xview2(name, "--help").stdout
        assert "exit codes:" in text and "143" in text, name
        usage_end = text.index("\n\n")
        assert text[usage_end:].strip().split("\n")[0].strip(), name  # a description line
