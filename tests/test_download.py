"""Downloads end to end, against the signed-link server, into a folder and into moto S3."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import boto3
import pytest

from xview2_ingest import download, status
from xview2_ingest.catalog import Catalog
from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.errors import ChecksumMismatchError, ContentError, LinkExpiredError
from xview2_ingest.events import Event
from xview2_ingest.stores import LocalStore

MiB = 1 << 20
GiB = 1 << 30


def published(dest: str, name: str) -> bytes | None:
    if dest.startswith("s3://"):
        bucket, _, prefix = dest[5:].partition("/")
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        try:
            return s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
    path = Path(dest) / name
    return path.read_bytes() if path.exists() else None


def everything_written(dest: str) -> dict[str, bytes]:
    """Every file or object under the destination, work files included."""
    if dest.startswith("s3://"):
        bucket = dest[5:].partition("/")[0]
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}
    root = Path(dest)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def pending_uploads(dest: str) -> int:
    return len(status(dest).pending)


def test_lands_every_archive_verified(
    catalog_for, server: SignedLinkServer, dataset, dest: str
) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    names = sorted(p.name for p in root.iterdir())
    events: list[Event] = []
    report = download(
        server.links_text().split(), dest, catalog=catalog_for(root), progress=events.append
    )
    assert report.exit_code == 0, report.summary()
    assert [f.status for f in report.files] == ["verified"] * len(names)
    for name in names:
        assert published(dest, name) == (root / name).read_bytes()
    manifest = json.loads(published(dest, "manifest.json") or b"{}")
    for name in names:
        entry = manifest["files"][name]
        data = (root / name).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha1"] == hashlib.sha1(data).hexdigest()
        assert entry["verified"] is True and entry["verified_at"]
        assert entry["source"] == f"{server.base_url}/{name}"
    kinds = {e.kind for e in events}
    assert {"probed", "started", "bytes", "verifying", "published"} <= kinds
    assert sum(e.done for e in events if e.kind == "bytes") == report.bytes_fetched
    assert pending_uploads(dest) == 0


def test_rerun_downloads_nothing(catalog_for, server: SignedLinkServer, dataset, dest: str) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    links = server.links_text().split()
    assert download(links, dest, catalog=catalog_for(root)).ok
    before = len(server.requests)
    again = download(links, dest, catalog=catalog_for(root))
    assert again.exit_code == 0
    assert [f.status for f in again.files] == ["skipped", "skipped"]
    assert again.bytes_fetched == 0
    assert len(server.requests) == before  # not even a probe


def test_checksum_mismatch_publishes_nothing(server: SignedLinkServer, dataset, dest: str) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    name = "test_images_labels_targets.tar.gz"
    wrong = Catalog().with_overrides({name: {"sha1": "0" * 40}})
    report = download([server.url_for(name)], dest, catalog=wrong)
    assert report.exit_code == 1
    error = report.files[0].error
    assert isinstance(error, ChecksumMismatchError)
    assert name in str(error) and "0" * 40 in str(error)
    assert hashlib.sha1((root / name).read_bytes()).hexdigest() in str(error)
    assert published(dest, name) is None
    assert pending_uploads(dest) == 0  # the multipart upload was aborted, the temp file removed
    assert not [k for k in everything_written(dest) if name in k]


def test_expired_link_exits_3_and_names_the_file(server: SignedLinkServer, dest: str) -> None:
    name = "train_images_labels_targets.tar.gz"
    report = download([server.url_for(name, ttl=-30)], dest)
    assert report.exit_code == 3
    assert isinstance(report.files[0].error, LinkExpiredError)
    assert name in str(report.files[0].error)
    assert published(dest, name) is None


def test_file_in_no_catalog_is_size_checked_and_unverified(
    server: SignedLinkServer, dataset, dest: str
) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    name = "test_images_labels_targets.tar.gz"
    report = download([server.url_for(name)], dest, catalog=Catalog({}))
    assert report.exit_code == 0
    assert report.files[0].status == "unverified"
    assert published(dest, name) == (root / name).read_bytes()
    assert status(dest, catalog=Catalog({})).files[0].state == "unverified"


def test_size_disagreeing_with_catalog_is_refused_before_download(
    server: SignedLinkServer, dest: str
) -> None:
    name = "test_images_labels_targets.tar.gz"
    report = download(
        [server.url_for(name)], dest, catalog=Catalog().with_overrides({name: {"size": 5}})
    )
    assert report.exit_code == 1
    assert isinstance(report.files[0].error, ContentError)
    assert report.bytes_fetched == 0


def test_large_file_in_parallel_ranges(tmp_path: Path, dest: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(37 * MiB + 123)
    (src / "big.bin").write_bytes(data)
    catalog = Catalog().with_overrides({"big.bin": {"sha1": hashlib.sha1(data).hexdigest()}})
    with SignedLinkServer(src, faults=Faults()) as srv:
        report = download(
            [srv.url_for("big.bin")], dest, catalog=catalog, connections=4, memory_mb=64
        )
        ranges = [r for _, r in srv.requests if r]
    assert report.exit_code == 0, report.summary()
    assert published(dest, "big.bin") == data
    assert len(ranges) >= 5  # the probe and one request per part


def test_the_signature_never_leaks(
    catalog_for, server: SignedLinkServer, dataset, dest: str, caplog, capsys
) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    caplog.set_level(logging.DEBUG)
    links = server.links_text().split()
    signatures = [link.split("Signature=")[1].split("&")[0] for link in links]
    expired = server.url_for("train_images_labels_targets.tar.gz", ttl=-5)
    signatures.append(expired.split("Signature=")[1].split("&")[0])
    events: list[Event] = []
    download([expired], dest, progress=events.append)
    report = download(links, dest, catalog=catalog_for(root), progress=events.append)
    assert report.ok
    # The whole log, third-party loggers included (botocore's own SigV4 header aside).
    assert "Key-Pair-Id=" not in caplog.text and "Expires=" not in caplog.text
    assert not any(sig in caplog.text for sig in signatures)
    texts = [*capsys.readouterr()]
    texts += [repr(e) for e in events] + [str(f.error) for f in report.files]
    texts += [
        data.decode("latin-1")
        for name, data in everything_written(dest).items()
        if not name.endswith(".tar.gz")
    ]
    for text in texts:
        assert "Signature=" not in text and "Expires=" not in text
        for sig in signatures:
            assert sig not in text


def test_memory_budget_is_enforced(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(40 * MiB)
    (src / "m.bin").write_bytes(data)
    with SignedLinkServer(src) as srv:
        report = download(
            [srv.url_for("m.bin")],
            tmp_path / "d",
            connections=16,
            memory_mb=16,
            part_size=2 * MiB,
            catalog=Catalog({}),
        )
    assert report.ok
    assert 0 < report.peak_buffer_bytes <= 16 * MiB
    assert (tmp_path / "d" / "m.bin").read_bytes() == data


def test_buffers_suit_the_store(tmp_path, moto_endpoint, bucket) -> None:  # type: ignore[no-untyped-def]
    """Page-aligned memory maps for a local store's direct I/O; bytearrays for S3, which
    botocore sends whole; both are reused, and held to the budget."""
    import mmap

    from xview2_ingest.catalog import Catalog
    from xview2_ingest.stores import LocalStore
    from xview2_ingest.stores.s3 import S3Store
    from xview2_ingest.transfer.buffers import BufferPool
    from xview2_ingest.transfer.engine import TransferEngine

    kinds = {
        "local": LocalStore(tmp_path / "dest"),
        "s3": S3Store(f"s3://{bucket}/k", endpoint_url=moto_endpoint),
    }
    for name, kind in (("local", mmap.mmap), ("s3", bytearray)):
        engine = TransferEngine(kinds[name], Catalog({}))
        try:
            buf = engine.pool.acquire(MiB, lambda: False)
            assert isinstance(buf, kind) and len(buf) == MiB
            if kind is mmap.mmap:
                assert ctypes_address(buf) % mmap.PAGESIZE == 0
            engine.pool.release(buf)
            assert engine.pool.acquire(MiB, lambda: False) is buf  # reused, not reallocated
        finally:
            engine.close()
    pool = BufferPool(MiB, page_aligned=False)
    assert isinstance(pool.acquire(MiB, lambda: False), bytearray)
    assert pool.acquire(MiB, lambda: True) is None  # over budget: waits, here cancelled


def ctypes_address(buf) -> int:  # type: ignore[no-untyped-def]
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


@pytest.mark.parametrize(("connections", "memory_mb"), [(8, 128), (16, 128), (4, 32), (32, 64)])
def test_part_size_keeps_every_connection_busy_within_the_budget(
    tmp_path: Path, connections: int, memory_mb: int
) -> None:
    """A new S3 upload gets parts as large as the store likes (fewer requests), unless
    the budget could then not hold one per connection plus a reorder window."""
    from xview2_ingest.stores.s3 import S3Store
    from xview2_ingest.transfer.engine import TransferOptions, plan_part_size

    budget = memory_mb * MiB
    options = TransferOptions(connections=connections, memory_budget=budget)
    for store in (S3Store, LocalStore(tmp_path)):
        part = plan_part_size(GiB, store, options)  # type: ignore[arg-type]
        assert store.min_part_size <= part <= max(store.default_part_size, store.min_part_size)
        if part > store.min_part_size:
            assert budget // part >= connections + 2
    assert plan_part_size(GiB, S3Store, TransferOptions(part_size=7 * MiB)) == 7 * MiB  # type: ignore[arg-type]
    # a file too large for the store's part limit at that size gets larger parts
    assert plan_part_size(200 * GiB, S3Store, options) >= 200 * GiB // S3Store.max_parts  # type: ignore[arg-type]
