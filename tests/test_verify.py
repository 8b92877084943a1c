"""``verify``: published files hashed again, locally and on S3 (moto); a flipped byte is
found, named, marked corrupt, shown by ``status`` and fetched again by ``download``."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import boto3
import pytest

from xview2_ingest import download, status, verify
from xview2_ingest.catalog import Catalog
from xview2_ingest.cli.app import main
from xview2_ingest.demo.server import SignedLinkServer

MiB = 1 << 20
NAME = "big.tar.gz"


@pytest.fixture(params=["local", "s3"])
def dest(request, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return str(tmp_path / "dest")
    monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("moto_endpoint"))
    return f"s3://{request.getfixturevalue('bucket')}/xview2"


def read(dest: str, name: str) -> bytes:
    if dest.startswith("s3://"):
        bucket, _, prefix = dest[5:].partition("/")
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        return bytes(s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read())
    return (Path(dest) / name).read_bytes()


def overwrite(dest: str, name: str, data: bytes) -> None:
    """Change the published bytes behind the tool's back (bit rot, a hand edit)."""
    if dest.startswith("s3://"):
        bucket, _, prefix = dest[5:].partition("/")
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}", Body=data)
    else:
        (Path(dest) / name).write_bytes(data)


@pytest.fixture()
def big(tmp_path: Path, seed: int) -> tuple[Path, bytes, Catalog]:
    """A file of several 8 MiB read parts (and a short last one), and its catalog."""
    rng = random.Random(seed)
    src = tmp_path / "src"
    src.mkdir()
    data = b"\x1f\x8b" + rng.randbytes(21 * MiB + 4321)
    (src / NAME).write_bytes(data)
    catalog = Catalog().with_overrides(
        {NAME: {"size": len(data), "sha1": hashlib.sha1(data).hexdigest()}}
    )
    return src, data, catalog


def test_a_flipped_byte_is_found_marked_and_fetched_again(big, dest: str, seed: int) -> None:  # type: ignore[no-untyped-def]
    src, data, catalog = big
    with SignedLinkServer(src) as server:
        url = server.url_for(NAME)
        assert download([url], dest, catalog=catalog).ok
        clean = verify(None, dest, catalog=catalog)
        assert clean.exit_code == 0 and [f.status for f in clean.files] == ["ok"]
        assert clean.files[0].actual == {"sha1": hashlib.sha1(data).hexdigest()}

        where = random.Random(seed).randrange(len(data))
        flipped = bytearray(data)
        flipped[where] ^= 0x01
        overwrite(dest, NAME, bytes(flipped))
        report = verify(None, dest, catalog=catalog)
        assert report.exit_code == 1
        bad = report.files[0]
        assert bad.status == "corrupt" and bad.reference == "catalog"
        assert bad.expected == {"sha1": hashlib.sha1(data).hexdigest()}
        assert bad.actual == {"sha1": hashlib.sha1(flipped).hexdigest()}
        message = str(bad.error)
        assert NAME in message and bad.expected["sha1"] in message and bad.actual["sha1"] in message
        assert "xview2 download" in message  # the command that mends it
        entry = json.loads(read(dest, "manifest.json"))["files"][NAME]
        assert entry["corrupt"] is True and entry["corrupt_at"]
        assert entry["corrupt_digests"] == bad.actual
        assert [f.state for f in status(dest, catalog=catalog).files if f.name == NAME] == [
            "corrupt"
        ]

        before = server.bytes_served
        again = download([url], dest, catalog=catalog)  # no --force
        assert [f.status for f in again.files] == ["verified"], again.summary()
        assert server.bytes_served - before >= len(data)
    assert read(dest, NAME) == data
    entry = json.loads(read(dest, "manifest.json"))["files"][NAME]
    assert "corrupt" not in entry
    assert verify([NAME], dest, catalog=catalog).exit_code == 0


def test_without_a_catalog_entry_the_manifest_digest_decides(big, dest: str) -> None:  # type: ignore[no-untyped-def]
    src, data, _ = big
    with SignedLinkServer(src) as server:
        assert download([server.url_for(NAME)], dest, catalog=Catalog({})).ok
    assert verify(None, dest, catalog=Catalog({})).files[0].status == "ok"
    overwrite(dest, NAME, data[:-1] + bytes([data[-1] ^ 0x80]))
    bad = verify(None, dest, catalog=Catalog({})).files[0]
    assert bad.status == "corrupt" and bad.reference == "manifest"


def test_missing_file_and_the_command(big, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    src, data, catalog = big
    dest = tmp_path / "dest"
    with SignedLinkServer(src) as server:
        assert download([server.url_for(NAME)], dest, catalog=catalog).ok
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps({NAME: {"sha1": hashlib.sha1(data).hexdigest()}}))
    assert main(["verify", "--dest", str(dest), "--catalog", str(catalog_file)]) == 0
    (dest / NAME).write_bytes(b"\x1f\x8b" + data[2:-1])
    assert main(["verify", "--dest", str(dest), "--catalog", str(catalog_file)]) == 1
    assert "corrupt" in capsys.readouterr().err
    assert main(["verify", "--dest", str(dest), "--json", "absent.tgz"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["files"][0]["status"] == "missing" and out["exit_code"] == 1


def test_stores_read_bounded_ranges(dest: str) -> None:
    """The :class:`PartReader` capability verify relies on, for each store that claims it."""
    from xview2_ingest import open_destination
    from xview2_ingest.errors import DestinationError
    from xview2_ingest.stores import PartReader

    store = open_destination(dest)
    assert isinstance(store, PartReader)
    data = os.urandom(3 * MiB + 5)
    if not dest.startswith("s3://"):
        Path(dest).mkdir(parents=True)
    overwrite(dest, "f.bin", data)
    into = bytearray(MiB)
    store.read_into("f.bin", 2 * MiB + 5, memoryview(into))
    assert into == data[2 * MiB + 5 : 3 * MiB + 5]
    for _ in range(20):  # connections go back to the pool: no leak, no stale body
        store.read_into("f.bin", 7, memoryview(into)[:100])
        assert into[:100] == data[7:107]
    with pytest.raises(DestinationError):
        store.read_into("f.bin", 3 * MiB, memoryview(bytearray(10)))
