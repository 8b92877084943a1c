"""The xview2 command as a user runs it: a subprocess, exit codes, stderr."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from xview2_ingest.cli import main
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
    final = json.loads(st.stdout.splitlines()[-1])
    states = {f["name"]: f["state"] for f in final["report"]["files"]}
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


URL = "https://127.0.0.1:1/x.tar.gz"


def test_usage_errors_exit_2_in_the_users_terms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_links = tmp_path / "links.txt"
    bad_links.write_text("ftp://example.invalid/x.tar.gz\n")
    bad_cat = tmp_path / "cat.json"
    bad_cat.write_text("{oops")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = [  # (arguments, environment, what the message must say)
        (["download"], {}, "no links given"),
        (["download", "--links", str(bad_links)], {}, "https:// or http://"),
        (["download", "--links", str(tmp_path / "missing.txt")], {}, "missing.txt"),
        (["download", URL, "--catalog", str(bad_cat)], {}, "cat.json"),
        (["download", URL, "--connections", "0"], {}, "--connections: must be at least 1"),
        (["download", URL, "--connections", "1000"], {}, "--connections must be at most 256"),
        (["download", URL], {"XVIEW2_CONNECTIONS": "0"}, "XVIEW2_CONNECTIONS must be at least"),
        (["download", URL, "--part-size-mb", "0"], {}, "--part-size-mb: must be above 0"),
        (["download", URL, "--part-size-mb", "1e9"], {}, "at most 5120"),
        (["download", URL, "--memory-mb", str(10**9)], {}, "this machine's memory"),
        (["download", URL, "--dest", "s3://"], {}, "--dest 's3://' names no bucket"),
        (["download", URL, "--dest", "s3:///prefix"], {}, "names no bucket"),
        (["download", URL, "--dest", "s3://No_Such"], {}, "not a valid bucket name"),
        (["download", URL, "--dest", "ftp://bucket/x"], {}, "unsupported kind of destination"),
        (["download", URL, "--dest", "gs://"], {}, "--dest 'gs://' names no bucket"),
        (["download", URL, "--dest", "az:///x"], {}, "names no container"),
        (["download", URL], {"XVIEW2_DEST": "s3://"}, "XVIEW2_DEST 's3://' names no bucket"),
        (["download", URL, "--dest", str(a_file)], {}, "is a file, not a folder"),
        (["download", URL, "--dest", str(a_file / "sub")], {}, "cannot be created"),
        (["download", URL, "--bogus"], {}, "unrecognized arguments: --bogus"),
        (["extract", "--workers", "0"], {}, "--workers: must be at least 1"),
        (["demo", "--pairs", "0"], {}, "--pairs: must be at least 1"),
        (["status", "--dest", str(tmp_path / "typo")], {}, "typo does not exist"),
        (["clean", "--dest", str(tmp_path / "typo")], {}, "typo does not exist"),
        (["stats", "--dest", str(tmp_path / "typo")], {}, "typo does not exist"),
        (["stats", "--format", "csv", "--json"], {}, "choose one"),
        (["stats", "--format", "json"], {}, "invalid choice"),
        (["completion", "tcsh"], {}, "invalid choice"),
        (["nonsense"], {}, "invalid choice"),
    ]
    for args, env, said in cases:  # in-process: these end before any work starts
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            code = main(args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert said in err, (args, err)
    assert not (tmp_path / "typo").exists()  # status never creates what it looks at
    run = xview2("download", URL, "--dest", "s3://")  # and as a process
    assert run.returncode == 2 and "names no bucket" in run.stderr
    assert "Traceback" not in run.stderr


def test_status_of_a_folder_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    run = xview2("status", env={"XVIEW2_DEST": str(tmp_path / "nowhere")})
    assert run.returncode == 2
    assert "XVIEW2_DEST" in run.stderr and "does not exist" in run.stderr
    assert not (tmp_path / "nowhere").exists()


def test_connections_above_the_overall_cap_are_reported(
    server: SignedLinkServer, dataset, tmp_path: Path, write_catalog
) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    cat = write_catalog(root, tmp_path / "cat.json")
    url = server.url_for("test_images_labels_targets.tar.gz")
    run = xview2(
        "download", url, "--dest", str(tmp_path / "d"), "--catalog", str(cat),
        "--connections", "16", "--max-connections", "4",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "16 connections per file (--connections) is more than 4 in all" in run.stderr


def test_a_file_in_no_catalog_exits_0_and_says_it_is_unverified(
    server: SignedLinkServer, tmp_path: Path
) -> None:
    run = xview2("download", server.url_for("test_images_labels_targets.tar.gz"),
                 "--dest", str(tmp_path / "d"), env={"XVIEW2_CATALOG": ""})  # fmt: skip
    # the built-in catalog knows the official name with other digests: use another name
    assert run.returncode in (0, 1), run.stderr
    other = tmp_path / "src"
    other.mkdir()
    (other / "extra.tar.gz").write_bytes(b"\x1f\x8b" + os.urandom(300_000))
    with SignedLinkServer(other) as srv:
        run = xview2("download", srv.url_for("extra.tar.gz"), "--dest", str(tmp_path / "e"))
    assert run.returncode == 0, run.stderr
    assert "1 unverified" in run.stderr
    assert "only their size was checked (unverified): extra.tar.gz" in run.stderr
    assert "--catalog" in run.stderr


def test_help_fits_80_columns_and_positionals_are_named_alike() -> None:
    env = {"COLUMNS": "80"}
    listing = xview2("--help", env=env).stdout
    names = re.findall(r"^    (\w+)\s", listing, flags=re.M)
    assert {"download", "status", "clean", "extract", "completion"} <= set(names)
    for name in names:
        text = xview2(name, "--help", env=env).stdout
        assert max(len(line) for line in text.splitlines()) <= 80, (name, text)
        usage = text.split("\n\n")[0]
        # positionals: upper-case, "NAME ..." when several may be given
        assert "[name]" not in usage and "urls" not in usage, usage
    assert "[NAME ...]" in xview2("clean", "--help", env=env).stdout
    assert "[NAME ...]" in xview2("extract", "--help", env=env).stdout


def test_demo_runs_the_whole_job(tmp_path: Path) -> None:
    dest = tmp_path / "demo"
    run = xview2("demo", "--dest", str(dest), "--pairs", "6")
    assert run.returncode == 0, run.stderr
    assert "2 verified" in run.stderr and "indexed" in run.stderr
    assert "pairs" in run.stdout  # the stats table
    assert "…" not in run.stdout
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
    (tmp_path / "d").mkdir()
    commands = catalog_commands()
    assert {"download", "status", "extract", "ingest"} <= set(commands)
    for command in commands:
        run = xview2(command, "https://127.0.0.1:1/x.tar.gz", "--catalog", missing,
                     "--dest", str(tmp_path / "d"))  # fmt: skip
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


def test_a_missing_bucket_is_said_once(
    server: SignedLinkServer, moto_endpoint: str, tmp_path: Path
) -> None:
    links = tmp_path / "links.txt"
    links.write_text(server.links_text())
    run = xview2(
        "download", "--links", str(links), "--dest", "s3://no-such-bucket/x",
        "--endpoint-url", moto_endpoint, "--no-prompt",
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert "the bucket does not exist" in errors[0], errors


def test_an_error_shared_by_several_files_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    from xview2_ingest import DownloadReport, FileResult
    from xview2_ingest.cli.ui import show_failures
    from xview2_ingest.errors import DestinationError

    def full(name: str) -> DestinationError:
        return DestinationError("cannot write: the disk is full", file=name, hint="free space")

    files = [FileResult(n, "failed", error=full(n)) for n in ("a.tar.gz", "b.tar.gz")]
    show_failures(DownloadReport(files, "dest"))
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "error: cannot write: the disk is full (free space); 2 files: a.tar.gz, b.tar.gz"
    ]
