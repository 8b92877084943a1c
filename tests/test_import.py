"""``import``: archives already on this machine adopted into a folder or S3 (moto); a
partial browser download seeds the resume state so ``download`` fetches only the rest."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import boto3
import pytest

from xview2_ingest import download, import_archives, status
from xview2_ingest.catalog import Catalog
from xview2_ingest.cli.app import main
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.errors import ChecksumMismatchError, ExitCode

MiB = 1 << 20
NAME = "big.tar.gz"


@pytest.fixture(params=["local", "s3"])
def dest(request, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return str(tmp_path / "dest")
    monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("moto_endpoint"))
    return f"s3://{request.getfixturevalue('bucket')}/xview2"


def read(dest: str, name: str) -> bytes | None:
    if dest.startswith("s3://"):
        bucket, _, prefix = dest[5:].partition("/")
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None
    path = Path(dest) / name
    return path.read_bytes() if path.exists() else None


@pytest.fixture()
def archive(tmp_path: Path, seed: int) -> tuple[Path, bytes, Catalog]:
    """A 40 MiB archive served from ``src``, and its catalog (exact size and SHA-1)."""
    src = tmp_path / "src"
    src.mkdir()
    data = b"\x1f\x8b" + random.Random(seed).randbytes(40 * MiB + 777)
    (src / NAME).write_bytes(data)
    catalog = Catalog().with_overrides(
        {NAME: {"size": len(data), "sha1": hashlib.sha1(data).hexdigest()}}
    )
    return src, data, catalog


def test_a_complete_file_is_imported_and_then_not_downloaded(archive, tmp_path, dest) -> None:  # type: ignore[no-untyped-def]
    src, data, catalog = archive
    mine = tmp_path / "downloads" / NAME
    mine.parent.mkdir()
    mine.write_bytes(data)
    report = import_archives([mine], dest, catalog=catalog)
    assert report.exit_code == 0, report.summary()
    done = report.files[0]
    assert (done.status, done.name, done.verified) == ("imported", NAME, True)
    assert done.method == ("upload" if dest.startswith("s3://") else "link")
    assert read(dest, NAME) == data
    entry = json.loads(read(dest, "manifest.json") or b"{}")["files"][NAME]
    assert entry["verified"] is True and entry["sha1"] == hashlib.sha1(data).hexdigest()
    assert entry["imported"] == NAME and entry["source"] is None
    assert mine.read_bytes() == data  # the user's file is left as it was
    assert status(dest, catalog=catalog).pending == []
    with SignedLinkServer(src) as server:
        again = download([server.url_for(NAME)], dest, catalog=catalog)
        assert [f.status for f in again.files] == ["skipped"]
        assert server.requests == []


def test_a_renamed_file_is_known_by_its_sha1(archive, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, data, catalog = archive
    renamed = tmp_path / "download (1).bin"
    renamed.write_bytes(data)
    report = import_archives([renamed], tmp_path / "dest", catalog=catalog)
    assert report.files[0].name == NAME and report.files[0].status == "imported"
    assert "SHA-1" in report.files[0].detail
    assert (tmp_path / "dest" / NAME).read_bytes() == data


def test_a_wrong_file_is_refused_and_nothing_placed(archive, tmp_path, dest) -> None:  # type: ignore[no-untyped-def]
    _, data, catalog = archive
    wrong = tmp_path / NAME
    wrong.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    report = import_archives([wrong], dest, catalog=catalog)
    assert report.exit_code == ExitCode.FAILURE
    assert isinstance(report.files[0].error, ChecksumMismatchError)
    assert read(dest, NAME) is None
    assert status(dest, catalog=catalog).pending == []


@pytest.mark.parametrize("suffix", [".crdownload", ".part"])
def test_a_partial_download_is_finished_by_fetching_only_the_rest(  # type: ignore[no-untyped-def]
    archive, tmp_path, dest, suffix
) -> None:
    src, data, catalog = archive
    partial = tmp_path / f"{NAME}{suffix}"
    have = 35 * MiB + 12345
    partial.write_bytes(data[:have])
    report = import_archives([partial], dest, catalog=catalog)
    assert report.exit_code == 0, report.summary()
    seeded = report.files[0]
    assert seeded.status == "seeded" and seeded.name == NAME
    assert 0 < seeded.bytes_placed <= have
    assert [p.name for p in status(dest, catalog=catalog).pending] == [NAME]
    with SignedLinkServer(src) as server:
        result = download([server.url_for(NAME)], dest, catalog=catalog)
        served = server.bytes_served
    assert [f.status for f in result.files] == ["verified"], result.summary()
    assert read(dest, NAME) == data
    rest = len(data) - seeded.bytes_placed
    assert served <= rest + 2  # the rest, and the probe's two bytes
    assert result.files[0].bytes_fetched == rest
    assert result.files[0].bytes_resumed == seeded.bytes_placed


def test_partial_bytes_are_checked_at_the_end_not_trusted(archive, tmp_path, dest) -> None:  # type: ignore[no-untyped-def]
    src, data, catalog = archive
    partial = tmp_path / f"{NAME}.crdownload"
    bad = bytearray(data[: 34 * MiB])
    bad[1000] ^= 0xFF
    partial.write_bytes(bad)
    assert import_archives([partial], dest, catalog=catalog).files[0].status == "seeded"
    with SignedLinkServer(src) as server:
        result = download([server.url_for(NAME)], dest, catalog=catalog)
    assert isinstance(result.files[0].error, ChecksumMismatchError)
    assert read(dest, NAME) is None


def test_a_partial_file_of_unknown_size_needs_size(archive, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    src, data, _ = archive
    partial = tmp_path / f"{NAME}.part"
    partial.write_bytes(data[: 9 * MiB])
    dest = tmp_path / "dest"
    code = main(["import", str(partial), "--dest", str(dest)])
    assert code == ExitCode.USAGE
    assert "--size" in capsys.readouterr().err
    assert main(["import", str(partial), "--dest", str(dest), "--size", str(len(data))]) == 0
    with SignedLinkServer(src) as server:
        result = download([server.url_for(NAME)], dest, catalog=Catalog({}))
        assert server.bytes_served <= len(data) - 8 * MiB + 2
    assert result.ok and (dest / NAME).read_bytes() == data


def test_a_folder_is_refused_with_a_hint(tmp_path: Path) -> None:
    bundle = tmp_path / f"{NAME}.download"
    bundle.mkdir()
    report = import_archives([bundle, tmp_path / "absent.tgz"], tmp_path / "dest")
    assert [f.status for f in report.files] == ["failed", "failed"]
    assert "regular file" in str(report.files[0].error)
    assert "cannot read it" in str(report.files[1].error)
    assert report.exit_code == ExitCode.FAILURE
