"""Extraction: real archives, a real folder and the real moto S3 server; no mocks."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, cast

import pytest

from xview2_ingest import extract
from xview2_ingest.archive import tarstream
from xview2_ingest.catalog import GEOTIFF_ARCHIVE, GEOTIFF_PART_NAMES, Catalog
from xview2_ingest.demo.synth import ARCHIVE_NAMES, SynthStats, make_split_archive
from xview2_ingest.errors import ExitCode, UsageError
from xview2_ingest.events import Event
from xview2_ingest.extract import (
    ArchiveChecksumError,
    ArchiveNotDownloadedError,
    CorruptArchiveError,
    Extractor,
    UnsafeArchiveError,
    UnsafeMemberError,
)
from xview2_ingest.extract.records import RECORD_DIR
from xview2_ingest.extract.safety import safe_name
from xview2_ingest.manifest import Manifest
from xview2_ingest.stores import LocalStore, Store
from xview2_ingest.stores.s3 import S3Store

MiB = 1 << 20
TRAIN, TEST = ARCHIVE_NAMES["train"], ARCHIVE_NAMES["test"]


# -- helpers -------------------------------------------------------------------------
def members_of(path: Path) -> dict[str, bytes]:
    """Regular members and their bytes, read with the standard library."""
    out = {}
    with tarfile.open(path, "r:*") as tar:
        for info in tar:
            if info.isfile():
                out[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    return out


def publish(store: Store, name: str, data: bytes) -> None:
    """Put a file at the destination and record it as downloaded, as `download` does."""
    store.write_bytes(name, data)
    Manifest(store).record(
        name,
        size=len(data),
        digests={"sha1": hashlib.sha1(data).hexdigest()},
        verified=True,
        source=None,
    )


def local_files(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and ".xview2" not in p.parts
    }


def s3_store(moto_endpoint: str, bucket: str, prefix: str = "x2") -> S3Store:
    return S3Store(f"s3://{bucket}/{prefix}", endpoint_url=moto_endpoint)


def tgz(members: list[tuple[tarfile.TarInfo, bytes | None]], **kw: object) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", **kw) as tar:  # type: ignore[call-overload]
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def gunzip(data: bytes) -> IO[bytes]:
    return cast(IO[bytes], gzip.GzipFile(fileobj=io.BytesIO(data)))


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


# -- local -------------------------------------------------------------------------
@pytest.fixture()
def local_dest(tmp_path: Path, dataset: tuple[Path, SynthStats]) -> Path:
    root, _ = dataset
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    for name in (TRAIN, TEST):
        publish(store, name, (root / name).read_bytes())
    return dest


def test_local_extraction_matches_the_archives(
    local_dest: Path, dataset: tuple[Path, SynthStats]
) -> None:
    root, stats = dataset
    events: list[Event] = []
    report = extract(None, local_dest, progress=events.append, workers=4)
    assert report.ok and report.exit_code == 0, report.summary()
    assert [a.name for a in report.archives] == [TEST, TRAIN]
    for result, split in zip(report.archives, ("test", "train"), strict=True):
        expected = members_of(root / ARCHIVE_NAMES[split])
        assert result.status == "extracted"
        assert result.members_total == result.members_written == stats.members[split]
        assert result.members_written == len(expected)
        assert result.archive_bytes == (root / ARCHIVE_NAMES[split]).stat().st_size
        for name, data in expected.items():
            assert (local_dest / name).read_bytes() == data
        for sub in ("images", "labels", "targets"):
            assert (local_dest / split / sub).is_dir()
    files = local_files(local_dest)
    assert len(files) == stats.members["train"] + stats.members["test"] + 3  # archives, manifest
    assert not [p for p in local_dest.rglob("*.tmp")]
    # progress: one stage, bytes adding up to each archive's size, one published each
    assert events[0].kind == "stage" and events[0].name == "extract"
    for name in (TRAIN, TEST):
        mine = [e for e in events if e.name == name]
        assert sum(e.done for e in mine if e.kind == "bytes") == (root / name).stat().st_size
        assert {e.total for e in mine if e.kind == "bytes"} == {(root / name).stat().st_size}
        assert mine[-1].kind == "published"
    # a record per archive
    assert (local_dest / RECORD_DIR / f"{TRAIN}.json").exists()


def test_rerun_skips_everything_without_reading(local_dest: Path) -> None:
    assert extract(None, local_dest).ok
    before = {p: p.stat().st_mtime_ns for p in local_dest.rglob("*.png")}
    events: list[Event] = []
    again = extract(None, local_dest, progress=events.append)
    assert again.ok
    assert {a.status for a in again.archives} == {"skipped"}
    assert all(a.members_written == 0 and a.archive_bytes == 0 for a in again.archives)
    assert all(a.members_skipped == a.members_total > 0 for a in again.archives)
    assert not [e for e in events if e.kind == "bytes"]
    assert before == {p: p.stat().st_mtime_ns for p in local_dest.rglob("*.png")}


def test_deleted_and_damaged_members_are_restored(local_dest: Path) -> None:
    first = extract([TRAIN], local_dest).archives[0]
    images = sorted((local_dest / "train" / "images").iterdir())
    good = {p: p.read_bytes() for p in images[:3]}
    images[0].unlink()
    images[1].write_bytes(b"short")
    report = extract([TRAIN], local_dest)
    result = report.archives[0]
    assert result.status == "extracted"
    assert result.members_written == 2
    assert result.members_skipped == first.members_total - 2
    for path, data in good.items():
        assert path.read_bytes() == data


def test_interrupted_extraction_publishes_nothing_and_runs_again(local_dest: Path) -> None:
    """Members are staged until the whole archive is verified: an interruption leaves no
    member under its name (nor a staged file), and the next run extracts it all."""
    seen = 0

    def stop_midway(event: Event) -> None:
        nonlocal seen
        if event.kind == "bytes":
            seen += event.done
            if seen > 3 * MiB:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract([TRAIN], local_dest, progress=stop_midway, workers=2)
    assert not [p for p in (local_dest / "train").rglob("*") if p.is_file()]
    assert not (local_dest / RECORD_DIR / f"{TRAIN}.json").exists()
    result = extract([TRAIN], local_dest).archives[0]
    assert result.status == "extracted" and result.members_skipped == 0
    assert result.members_written == result.members_total > 0
    assert not list((local_dest / "train").rglob(".*.tmp"))


def test_remove_archives_only_after_a_complete_extraction(local_dest: Path) -> None:
    report = extract([TRAIN], local_dest, remove_archives=True)
    assert report.ok and report.archives[0].removed == [TRAIN]
    assert not (local_dest / TRAIN).exists() and (local_dest / TEST).exists()
    # the record remembers: a rerun is a no-op although the archive is gone
    again = extract(None, local_dest)
    assert [a.status for a in again.archives] == ["extracted", "skipped"]
    # ... until an extracted file is lost: then the archive is needed again
    next((local_dest / "train" / "labels").iterdir()).unlink()
    lost = extract([TRAIN], local_dest).archives[0]
    assert isinstance(lost.error, ArchiveNotDownloadedError)
    assert "download" in str(lost.error)


def test_an_archive_not_downloaded_is_refused(tmp_path: Path, dataset: tuple) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveNotDownloadedError, match="download"):
        extract(None, dest)
    dest.mkdir(exist_ok=True)
    shutil.copy(dataset[0] / TRAIN, dest / TRAIN)  # present, but not in the manifest
    report = extract([TRAIN, "notes.txt"], dest)
    assert not report.ok and report.exit_code == 2  # the usage error wins
    assert isinstance(report.archives[0].error, ArchiveNotDownloadedError)
    assert "xview2 download" in str(report.archives[0].error)
    assert isinstance(report.archives[1].error, UsageError)
    assert not (dest / "train").exists()


def test_a_truncated_archive_is_reported(tmp_path: Path, dataset: tuple) -> None:
    store = LocalStore(tmp_path / "dest")
    data = (dataset[0] / TRAIN).read_bytes()
    publish(store, TRAIN, data[: len(data) // 2])
    result = extract([TRAIN], tmp_path / "dest").archives[0]
    assert isinstance(result.error, CorruptArchiveError)
    assert result.error.exit_code == ExitCode.FAILURE
    assert not (tmp_path / "dest" / RECORD_DIR / f"{TRAIN}.json").exists()


# -- hostile archives ------------------------------------------------------------------
HOSTILE: dict[str, tuple[Callable[[Path], tarfile.TarInfo], str]] = {
    "dotdot": (lambda out: member("../outside/evil.txt"), "'..'"),
    "nested-dotdot": (lambda out: member("train/../../outside/evil.txt"), "'..'"),
    "absolute": (lambda out: member(str(out / "evil.txt")), "absolute path"),
    "symlink": (lambda out: member("train/link", tarfile.SYMTYPE, str(out)), "symbolic link"),
    "relative-symlink": (
        lambda out: member("train/ok-link", tarfile.SYMTYPE, "images"),
        "symbolic link",
    ),
    "hardlink": (lambda out: member("train/hard", tarfile.LNKTYPE, "train/a.png"), "hard link"),
    "chardev": (lambda out: member("train/tty", tarfile.CHRTYPE), "character device"),
    "blockdev": (lambda out: member("train/sda", tarfile.BLKTYPE), "block device"),
    "fifo": (lambda out: member("train/pipe", tarfile.FIFOTYPE), "fifo"),
    "sparse": (lambda out: member("train/s.bin", tarfile.GNUTYPE_SPARSE), "GNU sparse file"),
    "long-dotdot": (lambda out: member("train/" + "d" * 120 + "/../../../evil.txt"), "'..'"),
    "workarea": (lambda out: member(".xview2/extract/x.json"), ".xview2"),
    "manifest": (lambda out: member("./manifest.json"), "manifest"),
}


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused(tmp_path: Path, case: str, fmt: int) -> None:
    make, reason = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    hostile = make(outside)
    data = None if hostile.type != tarfile.REGTYPE else b"pwned"
    archive = tgz(
        [
            (member("train/a.png"), b"\x89PNG first"),
            (hostile, data),
            (member("train/z.png"), b"\x89PNG last"),
        ],
        format=fmt,
    )
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    publish(store, TRAIN, archive)
    manifest_before = (dest / "manifest.json").read_bytes()
    report = extract([TRAIN], dest)
    error = report.archives[0].error
    assert isinstance(error, UnsafeMemberError) and isinstance(error, UnsafeArchiveError)
    assert error.archive == TRAIN and error.member == hostile.name
    assert reason in error.reason and TRAIN in str(error) and hostile.name in str(error)
    assert report.exit_code == ExitCode.FAILURE
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "outside"]
    assert local_files(dest) == {TRAIN: len(archive), "manifest.json": len(manifest_before)}
    assert (dest / "manifest.json").read_bytes() == manifest_before
    assert not (dest / "train").exists()  # the member written before the bad one is gone
    assert not (dest / RECORD_DIR / f"{TRAIN}.json").exists()


def test_a_link_already_at_the_destination_cannot_lead_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    publish(LocalStore(dest), TRAIN, tgz([(member("train/images/a.png"), b"x")]))
    (dest / "train").symlink_to(outside)
    error = extract([TRAIN], dest).archives[0].error
    assert isinstance(error, UnsafeMemberError) and "outside" in error.reason
    assert list(outside.iterdir()) == []


def test_hostile_archive_refused_on_s3(moto_endpoint: str, bucket: str, s3) -> None:  # type: ignore[no-untyped-def]
    store = s3_store(moto_endpoint, bucket)
    archive = tgz(
        [
            (member("train/a.png"), b"first"),
            (member("train/evil", tarfile.SYMTYPE, "/etc/passwd"), None),
        ]
    )
    publish(store, TRAIN, archive)
    report = extract([TRAIN], f"s3://{bucket}/x2", endpoint_url=moto_endpoint)
    assert isinstance(report.archives[0].error, UnsafeMemberError)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert keys == {f"x2/{TRAIN}", "x2/manifest.json"}


# -- the tar reader itself --------------------------------------------------------------
@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reader_reads_every_format(fmt: int) -> None:
    """ustar (name prefix), GNU (long names and links), pax (long and non-ASCII names)."""
    long_dir = "train/" + "d" * 90 + "/" + "e" * 60
    names = ["train/images/a.png", f"{long_dir}/long_name_{'x' * 80}.png", "train/é-ü.json"]
    target = "images/" + "t" * 150 + ".png"  # GNU long link, pax linkpath
    if fmt == tarfile.USTAR_FORMAT:
        names[1] = f"{'p' * 120}/short.png"  # ustar: prefix + name
        target = "images/a.png"
    written = {n: os.urandom(i * 1000 + 1) for i, n in enumerate(names)}
    written["train/empty.txt"] = b""
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [(member("train", tarfile.DIRTYPE), None)]
    entries += [(member(n), data) for n, data in written.items()]
    entries.append((member("train/link", tarfile.SYMTYPE, target), None))
    raw = tgz(entries, format=fmt)
    reader = tarstream.TarStream(gunzip(raw), "t.tgz")
    seen: list[tarstream.TarMember] = []
    got: dict[str, bytes] = {}
    while (m := reader.next_member()) is not None:
        seen.append(m)
        if m.is_file:
            got[m.name] = reader.read_data()
    assert got == written
    assert seen[0].is_dir and seen[0].name == "train"
    assert seen[-1].kind() == "symbolic link" and seen[-1].linkname == target
    assert all(m.mode == 0o644 for m in seen) and reader.ended


def test_reader_slices_skips_and_drains() -> None:
    a, b, c = os.urandom(70_001), os.urandom(3 * MiB + 5), os.urandom(513)
    raw = tgz([(member("a"), a), (member("b"), b), (member("c"), c)])
    reader = tarstream.TarStream(gunzip(raw), "t.tgz")
    first = reader.next_member()
    assert first is not None and first.size == len(a)
    stream = reader.data_reader()
    parts = []
    while chunk := stream.read(7_000):
        parts.append(chunk)
    assert b"".join(parts) == a
    second = reader.next_member()
    assert second is not None and second.name == "b"
    assert reader.data_reader().read(10) == b[:10]  # the rest is skipped by next_member
    third = reader.next_member()
    assert third is not None and reader.read_data() == c
    assert reader.next_member() is None and reader.next_member() is None
    assert reader.drain() < 10240


# raw archives, header by header, for what tarfile would not write
def header(
    name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, pax: dict[str, str] | None = None
) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.pax_headers = size, kind, 0o644, pax or {}
    if pax:
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def meta(kind: bytes, payload: bytes) -> bytes:
    """A GNU long-name or pax header with its payload."""
    return header("././@LongLink", len(payload), kind) + padded(payload)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def file(name: str, data: bytes) -> bytes:
    return header(name, len(data)) + padded(data)


END = bytes(1024)
GOOD = file("train/a.png", b"\x89PNG first")
HUGE_RECORD = pax_record("comment", "c" * (tarstream.META_MAX - 100))
CHAIN = (tarstream.HEADER_READ_MAX + 2 * tarstream.READ_SIZE) // tarstream.META_MAX + 10
"""Enough pax headers of almost META_MAX bytes to exceed what one member's headers may read."""


def bad_checksum() -> bytes:
    block = bytearray(header("train/b.png", 3))
    block[0] ^= 1  # the name changes, the recorded checksum does not
    return bytes(block)


DAMAGED: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "empty archive"),
    "not tar": (lambda: b"x" * 2048, "invalid tar header"),
    "bad checksum first": (lambda: bad_checksum() + b"abc" + END, "checksum"),
    # tarfile alone takes a damaged header after the first member for the end of the archive
    "bad checksum later": (lambda: GOOD + bad_checksum() + b"abc" + END, "checksum"),
    "truncated header": (lambda: GOOD + header("train/b.png", 3)[:100], "truncated header"),
    "truncated data": (lambda: GOOD + header("train/b.png", 5000) + b"d" * 1000, "middle"),
    "truncated padding": (lambda: GOOD + header("train/b.png", 100) + b"d" * 100, "middle"),
    "negative size": (lambda: GOOD + header("train/b.png", -1) + END, "negative"),
    "negative pax size": (
        lambda: meta(tarfile.XHDTYPE, pax_record("size", "-5")) + header("b") + END,
        "negative",
    ),
    "bad pax record": (lambda: GOOD + meta(tarfile.XHDTYPE, b"0 path=x\n") + GOOD, "invalid"),
    "oversized long name": (
        lambda: GOOD + header("././@LongLink", 1 << 30, tarfile.GNUTYPE_LONGNAME),
        "oversized metadata header (1,073,741,824 bytes)",
    ),
    "oversized pax header": (
        lambda: meta(tarfile.XHDTYPE, b"x" * (tarstream.META_MAX + 1)) + GOOD,
        "oversized metadata header",
    ),
    "chained pax headers": (
        lambda: GOOD + meta(tarfile.XHDTYPE, HUGE_RECORD) * CHAIN + GOOD + END,
        "metadata headers of one member too long",
    ),
    "many chained pax headers": (
        lambda: meta(tarfile.XHDTYPE, pax_record("comment", "c")) * 2000 + GOOD + END,
        "metadata headers",  # too deep for tarfile's recursion, or over the bound
    ),
    "global pax records": (
        lambda: (
            b"".join(
                meta(tarfile.XGLTYPE, pax_record(f"k{i}", "v" * (tarstream.META_MAX * 2 // 5)))
                for i in range(3)
            )
            + GOOD
            + END
        ),
        "global pax records longer than",
    ),
    "long name without a member": (
        lambda: GOOD + meta(tarfile.GNUTYPE_LONGNAME, b"train/" + b"n" * 200) + END,
        "the archive ends where a member header was expected",
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_archives_raise_corrupt_archive_error(case: str) -> None:
    make, message = DAMAGED[case]
    raw = make()
    reader = tarstream.TarStream(io.BytesIO(raw), "t.tar")
    with pytest.raises(CorruptArchiveError, match=re.escape(message)) as caught:
        while (m := reader.next_member()) is not None:
            if m.is_file:
                reader.read_data()
        reader.drain()
    assert caught.value.file == "t.tar"
    # memory stays bounded: what was read is the headers' allowance plus one read ahead
    assert reader.position <= tarstream.HEADER_READ_MAX + 2 * tarstream.READ_SIZE


def test_damaged_gzip_data_is_a_corrupt_archive() -> None:
    raw = bytearray(tgz([(member("train/a.json"), b"{}" * 100_000)]))
    raw[len(raw) // 2] ^= 0xFF
    reader = tarstream.TarStream(gunzip(bytes(raw)), "t.tgz")
    with pytest.raises(CorruptArchiveError, match="unreadable data"):
        while (m := reader.next_member()) is not None:
            if m.is_file:
                reader.read_data()
        reader.drain()


def test_archive_ends_without_or_with_a_lone_zero_block() -> None:
    """As with GNU tar: no end-of-archive marker is accepted, one zero block ends it."""
    for tail in (b"", bytes(512) + file("train/after.png", b"ignored")):
        reader = tarstream.TarStream(io.BytesIO(GOOD + tail), "t.tar")
        first = reader.next_member()
        assert first is not None and reader.read_data() == b"\x89PNG first"
        assert reader.next_member() is None and reader.ended


def test_members_whose_data_tarfile_skips_cannot_outrun_the_archive() -> None:
    """A type tarfile does not know (or a sparse file): its data is skipped by tarfile,
    which would read on past the end for as long as the header's size says."""
    raw = GOOD + header("train/x", 1 << 60, b"Z") + b"z" * 5000
    reader = tarstream.TarStream(io.BytesIO(raw), "t.tar")
    assert reader.next_member() is not None
    odd = reader.next_member()
    assert odd is not None and odd.kind() == "unsupported member type b'Z'"
    assert not odd.is_file and odd.size == 1 << 60
    with pytest.raises(CorruptArchiveError, match="ends in the middle of a member"):
        reader.next_member()
    # and when the data is there, iteration goes on past it
    raw = header("train/x", 700, b"Z") + padded(b"z" * 700) + GOOD + END
    reader = tarstream.TarStream(io.BytesIO(raw), "t.tar")
    assert [m.name for m in iter(reader.next_member, None)] == ["train/x", "train/a.png"]


def test_names_that_are_not_utf8_are_refused() -> None:
    raw = GOOD + file("train/caf\udce9.png", b"x") + END  # a Latin-1 byte, 0xE9
    reader = tarstream.TarStream(io.BytesIO(raw), "t.tar")
    assert reader.next_member() is not None
    with pytest.raises(UnsafeMemberError, match="not valid UTF-8") as caught:
        reader.next_member()
    assert caught.value.member == "train/caf\\xe9.png"


def test_pax_sparse_members_are_sparse() -> None:
    raw = header("train/s.bin", pax={"GNU.sparse.size": "10"}) + END
    found = tarstream.TarStream(io.BytesIO(raw), "t.tar").next_member()
    assert found is not None and found.sparse and found.kind() == "GNU sparse file"
    with pytest.raises(UnsafeMemberError, match="GNU sparse file"):
        safe_name("t.tar", found)


@pytest.mark.parametrize("decoder", ["isal", "zlib-ng", "zlib"])
def test_every_gzip_decoder_gives_the_same_members(decoder: str, dataset: tuple) -> None:
    path = dataset[0] / TEST
    opener: Callable[[io.BytesIO], object]
    if decoder == "isal":
        igzip = pytest.importorskip("isal.igzip")
        opener = lambda raw: igzip.IGzipFile(fileobj=raw, mode="rb")  # noqa: E731
    elif decoder == "zlib-ng":
        gzip_ng = pytest.importorskip("zlib_ng.gzip_ng")
        opener = lambda raw: gzip_ng.GzipNGFile(fileobj=raw, mode="rb")  # noqa: E731
    else:
        opener = lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")  # noqa: E731
    reader = tarstream.TarStream(opener(io.BytesIO(path.read_bytes())), TEST)  # type: ignore[arg-type]
    got = {}
    while (m := reader.next_member()) is not None:
        if m.is_file:
            got[m.name] = hashlib.sha1(reader.read_data()).hexdigest()
    assert reader.drain() < 10240  # the end-of-archive zeros, up to a 10 KiB record
    assert got == {n: hashlib.sha1(d).hexdigest() for n, d in members_of(path).items()}


# -- S3 -------------------------------------------------------------------------------
def test_s3_extraction_rerun_and_repair(
    moto_endpoint: str,
    bucket: str,
    s3,
    dataset: tuple[Path, SynthStats],  # type: ignore[no-untyped-def]
) -> None:
    root, stats = dataset
    store = s3_store(moto_endpoint, bucket)
    for name in (TRAIN, TEST):
        publish(store, name, (root / name).read_bytes())
    dest = f"s3://{bucket}/x2"
    report = extract(None, dest, endpoint_url=moto_endpoint, workers=8)
    assert report.ok, report.summary()
    objects = {
        o["Key"]: o["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="x2/")
        for o in page.get("Contents", [])
    }
    for split in ("train", "test"):
        expected = members_of(root / ARCHIVE_NAMES[split])
        assert len(expected) == stats.members[split]
        for name, data in expected.items():
            assert objects[f"x2/{name}"] == len(data)
    sample = next(n for n in members_of(root / TRAIN) if n.endswith(".json"))
    body = s3.get_object(Bucket=bucket, Key=f"x2/{sample}")["Body"].read()
    assert body == members_of(root / TRAIN)[sample]
    assert f"x2/{RECORD_DIR}/{TRAIN}.json" in objects
    # rerun: nothing read, nothing written
    again = extract(None, dest, endpoint_url=moto_endpoint)
    assert {a.status for a in again.archives} == {"skipped"}
    assert sum(a.archive_bytes for a in again.archives) == 0
    # lose two objects: exactly those come back
    lost = [k for k in objects if k.startswith("x2/train/images/")][:2]
    for key in lost:
        s3.delete_object(Bucket=bucket, Key=key)
    repaired = extract([TRAIN], dest, endpoint_url=moto_endpoint).archives[0]
    assert repaired.members_written == 2
    assert repaired.members_skipped == stats.members["train"] - 2
    for key in lost:
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == objects[key]


# -- the GeoTIFF archive in six parts ---------------------------------------------------
@pytest.fixture(scope="module")
def geotiff(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[bytes]]:
    """A .tgz in the GeoTIFF layout, big enough for six parts of >= 5 MiB (S3's minimum
    for every part of a multipart copy but the last)."""
    rng = __import__("random").Random(7)
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for split in ("tier1", "tier3", "test", "hold"):
        for i in range(4):
            stem = f"geotiffs/{split}/images/socal-fire_{i:08d}_pre_disaster"
            entries.append((member(f"{stem}.tif"), rng.randbytes(2 * MiB + 123 * i)))
            entries.append((member(stem.replace("images", "labels") + ".json"), b"{}"))
    whole = tgz(entries, compresslevel=1)
    assert len(whole) > 31 * MiB
    cut = len(whole) // 6
    parts = [whole[i * cut : (i + 1) * cut if i < 5 else None] for i in range(6)]
    return whole, parts


def geotiff_catalog(whole: bytes) -> Catalog:
    return Catalog().with_overrides({GEOTIFF_ARCHIVE: {"sha1": hashlib.sha1(whole).hexdigest()}})


def test_geotiff_parts_extract_as_one_and_assemble_locally(
    tmp_path: Path, geotiff: tuple[bytes, list[bytes]]
) -> None:
    whole, parts = geotiff
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    for name, data in zip(GEOTIFF_PART_NAMES, parts, strict=True):
        publish(store, name, data)
    catalog = geotiff_catalog(whole)
    report = extract([GEOTIFF_PART_NAMES[2]], dest, catalog=catalog, assemble_geotiff=True)
    result = report.archives[0]
    assert report.ok, report.summary()
    assert result.name == GEOTIFF_ARCHIVE and result.sources == list(GEOTIFF_PART_NAMES)
    assert result.sha1 == hashlib.sha1(whole).hexdigest() and result.assembled
    assert result.archive_bytes == len(whole)
    expected = members_of_bytes(whole)
    assert result.members_written == len(expected) == 32
    for name, data in expected.items():
        assert (dest / name).read_bytes() == data
    assert (dest / GEOTIFF_ARCHIVE).read_bytes() == whole
    entry = Manifest(store).get(GEOTIFF_ARCHIVE)
    assert entry and entry["verified"] and entry["sha1"] == result.sha1
    # now assembled: a rerun with remove_archives removes the parts, keeps the whole
    again = extract(None, dest, catalog=catalog, remove_archives=True, assemble_geotiff=True)
    assert [a.status for a in again.archives] == ["skipped"]
    assert sorted(again.archives[0].removed) == sorted(GEOTIFF_PART_NAMES)
    assert (dest / GEOTIFF_ARCHIVE).exists()
    assert not [n for n in GEOTIFF_PART_NAMES if (dest / n).exists()]


def members_of_bytes(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {i.name: tar.extractfile(i).read() for i in tar if i.isfile()}  # type: ignore[union-attr]


def test_geotiff_wrong_sha1_or_missing_part(
    tmp_path: Path, geotiff: tuple[bytes, list[bytes]]
) -> None:
    whole, parts = geotiff
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    for name, data in list(zip(GEOTIFF_PART_NAMES, parts, strict=True))[:5]:
        publish(store, name, data)
    missing = extract([GEOTIFF_ARCHIVE], dest, catalog=geotiff_catalog(whole)).archives[0]
    assert isinstance(missing.error, ArchiveNotDownloadedError)
    assert "af" in str(missing.error) and "download" in str(missing.error)
    publish(store, GEOTIFF_PART_NAMES[5], parts[5])
    # the built-in catalog has the real archive's SHA1: this one does not match
    report = extract(None, dest, assemble_geotiff=True, remove_archives=True)
    error = report.archives[0].error
    assert isinstance(error, ArchiveChecksumError) and error.expected != error.actual
    assert error.actual == hashlib.sha1(whole).hexdigest()
    assert not (dest / GEOTIFF_ARCHIVE).exists()  # neither assembled ...
    assert all((dest / n).exists() for n in GEOTIFF_PART_NAMES)  # ... nor removed
    assert not (dest / RECORD_DIR / f"{GEOTIFF_ARCHIVE}.json").exists()


def test_geotiff_on_s3_extracts_and_assembles_server_side(
    moto_endpoint: str,
    bucket: str,
    s3,
    geotiff: tuple[bytes, list[bytes]],  # type: ignore[no-untyped-def]
) -> None:
    whole, parts = geotiff
    store = s3_store(moto_endpoint, bucket)
    for name, data in zip(GEOTIFF_PART_NAMES, parts, strict=True):
        publish(store, name, data)
    report = extract(
        None,
        f"s3://{bucket}/x2",
        endpoint_url=moto_endpoint,
        catalog=geotiff_catalog(whole),
        assemble_geotiff=True,
        remove_archives=True,
    )
    result = report.archives[0]
    assert report.ok, report.summary()
    assert result.assembled and result.sha1 == hashlib.sha1(whole).hexdigest()
    assert sorted(result.removed) == sorted(GEOTIFF_PART_NAMES)
    head = s3.head_object(Bucket=bucket, Key=f"x2/{GEOTIFF_ARCHIVE}")
    assert head["ContentLength"] == len(whole)
    assert head["ETag"].strip('"').endswith("-6")  # a six-part multipart upload (copies)
    body = s3.get_object(Bucket=bucket, Key=f"x2/{GEOTIFF_ARCHIVE}")["Body"].read()
    assert body == whole
    for name, data in list(members_of_bytes(whole).items())[:5]:
        assert s3.get_object(Bucket=bucket, Key=f"x2/{name}")["Body"].read() == data
    for name in GEOTIFF_PART_NAMES:
        assert store.size_of(name) is None


def test_s3_compose_cuts_large_sources_into_ranges(moto_endpoint: str, bucket: str, s3) -> None:  # type: ignore[no-untyped-def]
    store = s3_store(moto_endpoint, bucket, "c")
    a, b = os.urandom(11 * MiB + 5), os.urandom(3 * MiB)
    store.write_bytes("a", a)
    store.write_bytes("b", b)
    # ranges of at most 6 MiB: "a" becomes two copied parts of ~5.5 MiB, "b" the last one
    assert store.compose("ab", ("a", "b"), max_part_size=6 * MiB) == len(a) + len(b)
    head = s3.head_object(Bucket=bucket, Key="c/ab")
    assert head["ETag"].strip('"').endswith("-3")
    assert s3.get_object(Bucket=bucket, Key="c/ab")["Body"].read() == a + b
    with pytest.raises(Exception, match="minimum"):
        store.compose("ba", ("b", "a"))  # "b" would be a 3 MiB part that is not the last


def test_make_split_archive_with_a_custom_name_extracts(tmp_path: Path) -> None:
    """Archives named .tar (gzip inside, as some people save them) are read by content."""
    path = make_split_archive(tmp_path / "src", "hold", 3, name="hold.tar")
    dest = tmp_path / "dest"
    publish(LocalStore(dest), "hold.tar", path.read_bytes())
    result = extract(["hold.tar"], dest).archives[0]
    assert result.status == "extracted" and result.members_written == 18


@pytest.mark.parametrize("where", ["local", "s3"])
def test_members_larger_than_the_memory_budget_are_streamed(
    where: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    big = os.urandom(5 * MiB + 17)
    archive = tgz([(member("train/images/big.tif"), big), (member("train/labels/a.json"), b"{}")])
    store: Store
    if where == "local":
        store = LocalStore(tmp_path / "dest")
    else:
        store = s3_store(
            request.getfixturevalue("moto_endpoint"), request.getfixturevalue("bucket")
        )
    publish(store, TRAIN, archive)
    # a 4 MiB budget: members over 2 MiB go straight from the decoder to the destination
    report = Extractor(store, memory_budget=4 * MiB, workers=2).run([TRAIN])
    assert report.ok, report.summary()
    assert report.archives[0].members_written == 2
    with store.open_read("train/images/big.tif") as fh:
        assert fh.read() == big


def test_falls_back_to_the_standard_library_decoder(tmp_path: Path, dataset: tuple) -> None:
    """Without isal and zlib-ng (imports blocked in a fresh interpreter), zlib does the work."""
    dest = tmp_path / "dest"
    publish(LocalStore(dest), TEST, (dataset[0] / TEST).read_bytes())
    code = (
        "import sys\n"
        "sys.modules['isal'] = sys.modules['zlib_ng'] = None\n"
        "from xview2_ingest import extract\nfrom xview2_ingest.extract import DECODER\n"
        "report = extract([sys.argv[2]], sys.argv[1])\n"
        "print(DECODER, report.archives[0].members_written)\n"
        "sys.exit(report.exit_code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(dest), TEST], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["zlib", str(dataset[1].members["test"])]


# -- stores without the optional capabilities ---------------------------------------------
class BaseOnlyStore:
    """The base :class:`Store` contract only, over a local folder: no RangeReader,
    Composer, Copier nor LocalFiles (as a new object store might start).  The first read
    of a file named in ``breaks`` fails after that many bytes, as a network stream can."""

    def __init__(self, inner: LocalStore, breaks: dict[str, int] | None = None):
        self._inner, self._breaks = inner, breaks or {}
        self.url = f"base-only:{inner.url}"
        self.min_part_size, self.default_part_size = inner.min_part_size, inner.default_part_size
        self.max_parts, self.checkpoint_interval = inner.max_parts, inner.checkpoint_interval
        self.page_aligned_buffers = inner.page_aligned_buffers
        self.opened: list[str] = []

    def open_upload(self, name: str, size: int, part_size: int):  # type: ignore[no-untyped-def]
        return self._inner.open_upload(name, size, part_size)

    def size_of(self, name: str) -> int | None:
        return self._inner.size_of(name)

    def read_bytes(self, name: str) -> bytes | None:
        return self._inner.read_bytes(name)

    def write_bytes(self, name: str, data: bytes) -> None:
        self._inner.write_bytes(name, data)

    def open_read(self, name: str) -> IO[bytes]:
        fh = self._inner.open_read(name)
        first = name not in self.opened
        self.opened.append(name)
        if first and name in self._breaks:
            return cast(IO[bytes], BreakingReader(fh, self._breaks[name]))
        return fh

    def put_stream(self, name: str, stream: IO[bytes], size: int) -> None:
        self._inner.put_stream(name, stream, size)

    def delete(self, name: str) -> None:
        self._inner.delete(name)

    def list_files(self, prefix: str = ""):  # type: ignore[no-untyped-def]
        return self._inner.list_files(prefix)

    def pending_uploads(self):  # type: ignore[no-untyped-def]
        return self._inner.pending_uploads()

    def abort_pending(self, name: str | None = None, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
        return self._inner.abort_pending(name, dry_run=dry_run)


class BreakingReader(io.RawIOBase):
    """A file that fails with a connection error once ``limit`` bytes were read."""

    def __init__(self, fh: IO[bytes], limit: int):
        self._fh, self._left = fh, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            raise ConnectionResetError("connection reset by peer")
        data = self._fh.read(min(self._left, size if size and size > 0 else self._left))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._fh.close()
        super().close()


def test_a_store_without_capabilities_is_what_it_says() -> None:
    from xview2_ingest.stores import Composer, Copier, LocalFiles, RangeReader

    store = BaseOnlyStore(LocalStore("unused"))
    assert isinstance(store, Store)
    assert not any(isinstance(store, c) for c in (RangeReader, Composer, Copier, LocalFiles))


def test_broken_stream_without_range_reader_is_read_again(
    tmp_path: Path, geotiff: tuple[bytes, list[bytes]]
) -> None:
    """No ranged reads: the broken part is opened again and its first bytes dropped; the
    members are all there and the SHA1 of the whole (checked while reading) is right."""
    whole, parts = geotiff
    broken = GEOTIFF_PART_NAMES[2]
    store = BaseOnlyStore(LocalStore(tmp_path / "dest"), {broken: len(parts[2]) // 2 + 7})
    for name, data in zip(GEOTIFF_PART_NAMES, parts, strict=True):
        publish(store, name, data)  # type: ignore[arg-type]
    report = Extractor(store, catalog=geotiff_catalog(whole)).run(None)  # type: ignore[arg-type]
    assert report.ok, report.summary()
    archives = [n for n in store.opened if not n.startswith(".xview2-staging/")]
    assert archives == [*GEOTIFF_PART_NAMES[:3], broken, *GEOTIFF_PART_NAMES[3:]]
    # no Copier: each staged member was read back once to be published
    assert len(store.opened) - len(archives) == len(members_of_bytes(whole))
    assert report.archives[0].sha1 == hashlib.sha1(whole).hexdigest()
    expected = members_of_bytes(whole)
    assert report.archives[0].members_written == len(expected)
    for name, content in expected.items():
        assert store.read_bytes(name) == content


def test_assemble_without_composer_is_a_clear_error(
    tmp_path: Path, geotiff: tuple[bytes, list[bytes]]
) -> None:
    whole, parts = geotiff
    store = BaseOnlyStore(LocalStore(tmp_path / "dest"))
    for name, data in zip(GEOTIFF_PART_NAMES, parts, strict=True):
        publish(store, name, data)  # type: ignore[arg-type]
    extractor = Extractor(store, catalog=geotiff_catalog(whole), assemble_geotiff=True)  # type: ignore[arg-type]
    report = extractor.run(None)
    result = report.archives[0]
    assert result.status == "failed" and report.exit_code == ExitCode.FAILURE
    message = str(result.error)
    assert store.url in message and "Composer" in message and "--assemble-geotiff" in message
    assert result.error is not None and result.error.file == GEOTIFF_ARCHIVE
    assert store.size_of(GEOTIFF_ARCHIVE) is None
    assert all(store.size_of(name) for name in members_of_bytes(whole))  # extracted anyway
