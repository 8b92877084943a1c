"""One contract, every store: a local folder and S3 (moto server) pass the same tests."""

from __future__ import annotations

import io
import os

import pytest

from xview2_ingest.stores import LocalStore, Store
from xview2_ingest.stores.s3 import S3Store

MiB = 1 << 20


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return LocalStore(tmp_path / "dest")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("bucket")
    return S3Store(f"s3://{bucket}/pre/fix", endpoint_url=endpoint)


def parts_of(data: bytes, part: int) -> list[memoryview]:
    return [memoryview(data)[i : i + part] for i in range(0, len(data), part)]


def test_parts_in_any_order_then_publish(store: Store) -> None:
    part = store.min_part_size
    data = os.urandom(3 * part + 1234)
    upload = store.open_upload("a/b.bin", len(data), part)
    pieces = parts_of(data, part)
    for i in (2, 0, 3, 1):
        upload.write_part(i, pieces[i])
    assert upload.done_parts() == {0, 1, 2, 3}
    assert store.size_of("a/b.bin") is None  # nothing under the final name yet
    upload.publish()
    assert store.size_of("a/b.bin") == len(data)
    with store.open_read("a/b.bin") as fh:
        assert fh.read() == data
    assert store.pending_uploads() == []


def test_resume_sees_parts_and_state_of_an_earlier_run(store: Store) -> None:
    part = store.min_part_size
    data = os.urandom(3 * part)
    first = store.open_upload("r.bin", len(data), part)
    first.write_part(1, parts_of(data, part)[1])
    first.checkpoint({"hashed": 0, "note": "kept"})
    first.close()
    pending = store.pending_uploads()
    assert [(p.name, p.parts_done, p.bytes_done) for p in pending] == [("r.bin", 1, part)]
    second = store.open_upload("r.bin", len(data), part)
    assert second.done_parts() == {1}
    assert (second.load_state() or {}).get("note") == "kept"
    readable = second.read_part(1, memoryview(bytearray(part)))
    assert readable == isinstance(store, LocalStore)
    second.close()
    # another part size (new settings) resumes with the part size the upload started with
    third = store.open_upload("r.bin", len(data), 2 * part)
    assert (third.part_size, third.done_parts()) == (part, {1})
    third.close()
    # another file size does not resume
    fourth = store.open_upload("r.bin", len(data) + part, part)
    assert fourth.done_parts() == set()
    fourth.abort()
    assert store.size_of("r.bin") is None


def test_abort_and_discard_leave_nothing(store: Store) -> None:
    part = store.min_part_size
    data = os.urandom(part + 10)
    upload = store.open_upload("x.bin", len(data), part)
    upload.write_part(0, parts_of(data, part)[0])
    upload.abort()
    assert store.pending_uploads() == [] and store.size_of("x.bin") is None
    other = store.open_upload("y.bin", len(data), part)
    other.write_part(0, parts_of(data, part)[0])
    other.checkpoint({})
    other.close()
    assert store.discard_pending() == 1
    assert store.pending_uploads() == []


def test_small_files_and_streams(store: Store) -> None:
    assert store.read_bytes("manifest.json") is None
    store.write_bytes("manifest.json", b"{}")
    store.write_bytes("index/images.parquet", b"PAR1")
    assert store.read_bytes("manifest.json") == b"{}"
    payload = os.urandom(100_000)
    store.put_stream("train/images/a.png", io.BytesIO(payload), len(payload))
    assert store.size_of("train/images/a.png") == len(payload)
    listed = dict(store.list_files("train"))
    assert listed == {"train/images/a.png": len(payload)}
    assert {"manifest.json", "index/images.parquet"} <= dict(store.list_files()).keys()
    store.delete("train/images/a.png")
    assert store.size_of("train/images/a.png") is None


def test_local_store_refuses_names_outside_the_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xview2_ingest.errors import DestinationError

    with pytest.raises(DestinationError):
        LocalStore(tmp_path).write_bytes("../escape.txt", b"x")


@pytest.mark.parametrize(
    ("direct_io", "aligned", "stays_direct"),
    [(True, True, True), (True, False, None), (False, True, False)],
)
def test_local_parts_direct_or_through_the_cache(  # type: ignore[no-untyped-def]
    tmp_path, direct_io: bool, aligned: bool, stays_direct: bool | None
) -> None:
    """Page-aligned parts go to disk with direct I/O, the unaligned tail and anything the
    kernel refuses (here: a buffer one byte off a page) through the cache; same bytes."""
    import mmap

    store = LocalStore(tmp_path / "dest", direct_io=direct_io)
    part = store.min_part_size
    data = os.urandom(2 * part + 5000)  # a tail that is no multiple of the block size
    upload = store.open_upload("d.bin", len(data), part)
    for i, piece in enumerate(parts_of(data, part)):
        if aligned:
            buf = mmap.mmap(-1, len(piece))
            buf[:] = piece
            view = memoryview(buf)
        else:
            view = memoryview(bytearray(len(piece) + 1))[1:]
            view[:] = piece
        upload.write_part(i, view)
    if direct_io and hasattr(os, "O_DIRECT") and upload._direct is None:
        pytest.skip("this file system does not take direct I/O")
    if stays_direct is not None:  # an unaligned buffer is up to the device to take
        assert (upload._direct is not None and upload._direct_ok) == stays_direct
    upload.publish()
    assert (tmp_path / "dest" / "d.bin").read_bytes() == data


def test_s3_parts_carry_their_crc32(moto_endpoint: str, bucket: str) -> None:
    """The object keeps the composite CRC32 of its parts: the server had every part's
    checksum, a part at a time, in an upload created for them."""
    import base64
    import zlib

    import boto3

    store = S3Store(f"s3://{bucket}/crc", endpoint_url=moto_endpoint)
    part = store.min_part_size
    data = os.urandom(2 * part + 4321)
    upload = store.open_upload("c.bin", len(data), part)
    for i in (2, 0, 1):
        upload.write_part(i, parts_of(data, part)[i])
    upload.publish()
    crcs = b"".join(zlib.crc32(p).to_bytes(4, "big") for p in parts_of(data, part))
    expected = base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode()
    head = boto3.client("s3", endpoint_url=moto_endpoint).head_object(
        Bucket=bucket, Key="crc/c.bin", ChecksumMode="ENABLED"
    )
    assert head["ChecksumCRC32"].split("-")[0] == expected


def test_s3_sends_a_whole_bytearray_part_as_it_is(moto_endpoint: str, bucket: str) -> None:
    """The engine's S3 buffers are bytearrays the size of their part: each goes out as
    the request body itself, not a copy; any other view is copied, and both arrive."""
    from xview2_ingest.stores.s3 import _body

    store = S3Store(f"s3://{bucket}/ba", endpoint_url=moto_endpoint)
    part = store.min_part_size
    data = os.urandom(part + 777)
    buffers = [bytearray(p) for p in parts_of(data, part)]
    assert _body(memoryview(buffers[0])) is buffers[0]
    partial = memoryview(buffers[0])[: part - 1]
    assert type(_body(partial)) is bytes and _body(partial) == data[: part - 1]
    upload = store.open_upload("ba.bin", len(data), part)
    upload.write_part(1, memoryview(buffers[1]))
    upload.write_part(0, memoryview(buffers[0]))
    upload.publish()
    assert store.read_bytes("ba.bin") == data


def test_s3_state_goes_to_a_local_copy_between_saves(  # type: ignore[no-untyped-def]
    moto_endpoint: str, bucket: str, s3, tmp_path, monkeypatch, state_dir
) -> None:
    """Checkpoints cost no request: they land in a local copy, and in the bucket only
    every few seconds and when the run stops.  A rerun here takes the newer copy."""
    import json

    url = f"s3://{bucket}/p"
    store = S3Store(url, endpoint_url=moto_endpoint)
    part = store.min_part_size
    data = os.urandom(2 * part)
    first = store.open_upload("s.bin", len(data), part)
    first.write_part(0, parts_of(data, part)[0])
    for hashed in (1, 2, 3):
        first.checkpoint({"hashed": hashed})

    def in_bucket() -> object:
        body = s3.get_object(Bucket=bucket, Key="p/.xview2/state/s.bin.json")["Body"].read()
        return json.loads(body)["engine"]

    assert in_bucket() is None  # only the upload's start reached the bucket
    assert store.open_upload("s.bin", len(data), part).load_state() == {"hashed": 3}

    # killed before close(): another machine (no local copy) resumes from the bucket's copy
    monkeypatch.setenv("XVIEW2_STATE_DIR", str(tmp_path / "elsewhere"))
    elsewhere = S3Store(url, endpoint_url=moto_endpoint)
    assert elsewhere.open_upload("s.bin", len(data), part).load_state() is None
    first.close()  # a run that stops saves its newest state to the bucket
    assert in_bucket() == {"hashed": 3}
    resumed = elsewhere.open_upload("s.bin", len(data), part)
    assert (resumed.load_state(), resumed.done_parts()) == ({"hashed": 3}, {0})

    monkeypatch.setenv("XVIEW2_STATE_DIR", str(state_dir))
    copy = store.local_copy("p/s.bin").path
    assert copy.exists()
    again = store.open_upload("s.bin", len(data), part)
    again.write_part(1, parts_of(data, part)[1])
    again.publish()
    assert not copy.exists(), "publishing leaves no local state behind"


def test_s3_state_without_a_usable_local_folder(  # type: ignore[no-untyped-def]
    moto_endpoint: str, bucket: str, tmp_path, monkeypatch
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XVIEW2_STATE_DIR", str(tmp_path / "a-file"))
    store = S3Store(f"s3://{bucket}/q", endpoint_url=moto_endpoint)
    part = store.min_part_size
    upload = store.open_upload("t.bin", 2 * part, part)
    upload.checkpoint({"hashed": 1})
    monkeypatch.setenv("XVIEW2_STATE_DIR", str(tmp_path / "elsewhere"))
    # every checkpoint went to the bucket: the newest is there without close()
    assert store.open_upload("t.bin", 2 * part, part).load_state() == {"hashed": 1}


def test_confirm_part_makes_the_store_hold_the_hashed_bytes(store: Store) -> None:
    """A part persisted by an earlier run and hashed again with other bytes (the source
    changed under the same name) ends up holding the bytes that were hashed."""
    part = store.min_part_size
    old, new = os.urandom(2 * part), os.urandom(2 * part)
    first = store.open_upload("c.bin", len(old), part)
    first.write_part(0, parts_of(old, part)[0])
    first.write_part(1, parts_of(old, part)[1])
    first.checkpoint({})
    first.close()
    second = store.open_upload("c.bin", len(new), part)
    assert second.done_parts() == {0, 1}
    assert second.confirm_part(0, parts_of(new, part)[0]) is False  # differed: written again
    buf = bytearray(part)
    if second.read_part(1, memoryview(buf)):  # a store that reads back proves equality
        assert second.confirm_part(1, memoryview(buf)) is True
        second.write_part(1, parts_of(new, part)[1])
    else:
        second.confirm_part(1, parts_of(new, part)[1])
    second.publish()
    assert store.read_bytes("c.bin") == new


def test_kept_bytes_of_an_unfinished_part_come_back(store: Store) -> None:
    part = store.min_part_size
    data = os.urandom(3 * part)
    first = store.open_upload("k.bin", len(data), part)
    first.write_part(0, parts_of(data, part)[0])
    head = parts_of(data, part)[1][: part // 3]
    assert first.keep_partial(1, head) == len(head)
    first.checkpoint({"hashed": 0})
    first.close()
    second = store.open_upload("k.bin", len(data), part)
    kept = second.kept_parts()
    assert kept.get(1) == len(head)
    back = bytearray(len(head))
    assert second.read_part(1, memoryview(back)) and back == head
    for i, piece in enumerate(parts_of(data, part)):
        if i in second.done_parts():
            second.confirm_part(i, piece)
        else:
            second.write_part(i, piece)
    second.publish()
    assert store.read_bytes("k.bin") == data
    assert store.pending_uploads() == []


def test_one_writer_at_a_time(store: Store, request) -> None:  # type: ignore[no-untyped-def]
    """A second holder of the same destination is refused, naming the first; after the
    first lets go the destination can be taken again."""
    from xview2_ingest.errors import DestinationError
    from xview2_ingest.stores.base import Exclusive

    assert isinstance(store, Exclusive)
    twin = (
        LocalStore(store.root)
        if isinstance(store, LocalStore)
        else S3Store(store.url, endpoint_url=request.getfixturevalue("moto_endpoint"))
    )
    assert isinstance(twin, Exclusive)
    with store.exclusive():
        with pytest.raises(DestinationError, match="another xview2 run") as info, twin.exclusive():
            pass
        assert f"pid {os.getpid()}" in str(info.value)
    with twin.exclusive():
        pass
