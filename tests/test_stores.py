"""One contract, every store: a local folder and S3 (moto server) pass the same tests.

The base contract (:class:`Store`, :class:`Upload`) applies to every store; each optional
capability a store claims (``isinstance(store, RangeReader)``...) has its own contract
below, run for every store that claims it.  A new store is one line in :data:`STORES`.
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from xview2_ingest.errors import DestinationError
from xview2_ingest.stores import (
    Composer,
    Copier,
    Exclusive,
    GroupedParts,
    LocalFiles,
    LocalStore,
    PartReader,
    PartSizer,
    RangeReader,
    RereadableParts,
    Store,
    Upload,
    base,
    open_store,
)
from xview2_ingest.stores.s3 import S3Store

MiB = 1 << 20

STORES: dict[str, Callable[[pytest.FixtureRequest, Path], Store]] = {
    "local": lambda request, tmp_path: LocalStore(tmp_path / "dest"),
    "s3": lambda request, tmp_path: S3Store(
        f"s3://{request.getfixturevalue('bucket')}/pre/fix",
        endpoint_url=request.getfixturevalue("moto_endpoint"),
    ),
    "gcs": lambda request, tmp_path: open_store(
        f"gs://{request.getfixturevalue('gcs_bucket')}/pre/fix"
    ),
    "azure": lambda request, tmp_path: open_store(
        f"az://{request.getfixturevalue('azure_container')}/pre/fix"
    ),
}


@pytest.fixture(params=list(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return STORES[request.param](request, tmp_path)


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
    assert [p.name for p in store.abort_pending(dry_run=True)] == ["y.bin"]
    assert [p.name for p in store.abort_pending()] == ["y.bin"]
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


# -- optional capabilities: one contract each, for every store that claims it -----------


def _capabilities() -> set[type]:
    """Every capability protocol ``stores.base`` declares (all but Store and Upload)."""
    return {
        obj
        for obj in vars(base).values()
        if inspect.isclass(obj)
        and getattr(obj, "_is_runtime_protocol", False)
        and obj not in (Store, Upload)
    }


def _publish(store: Store, name: str, data: bytes) -> None:
    store.put_stream(name, io.BytesIO(data), len(data))


def contract_range_reader(store: Store) -> None:
    """open_read_at gives the bytes from any offset, 0 and the very end included."""
    assert isinstance(store, RangeReader)
    data = os.urandom(MiB + 4321)
    _publish(store, "r/range.bin", data)
    for offset in (0, 1, 4096, len(data) // 2, len(data) - 1, len(data)):
        with store.open_read_at("r/range.bin", offset) as fh:
            assert fh.read() == data[offset:], offset
    with pytest.raises(DestinationError):
        store.open_read_at("r/missing.bin", 0)


def contract_composer(store: Store) -> None:
    """compose publishes the sources joined in order, atomically; sources stay; a source
    too small for the store (S3: 5 MiB but the last) is refused before anything starts."""
    assert isinstance(store, Composer)
    sizes = (5 * MiB + 17, 5 * MiB, 1234)  # S3's minimum copied part, and a small last
    sources = tuple(f"c/part-{i}" for i in range(len(sizes)))
    blobs = [os.urandom(n) for n in sizes]
    for name, blob in zip(sources, blobs, strict=True):
        _publish(store, name, blob)
    store.write_bytes("c/whole.bin", b"an older version")  # replaced
    assert store.compose("c/whole.bin", sources, workers=2) == sum(sizes)
    assert store.read_bytes("c/whole.bin") == b"".join(blobs)
    assert all(store.size_of(n) == len(b) for n, b in zip(sources, blobs, strict=True))
    with pytest.raises(DestinationError):
        store.compose("c/never.bin", ("c/part-0", "c/absent"))
    assert store.size_of("c/never.bin") is None
    # three small sources: joined, or refused with nothing left behind (S3's rule)
    small = tuple(f"c/small-{i}" for i in range(3))
    for name in small:
        store.write_bytes(name, name.encode())
    try:
        store.compose("c/small.bin", small)
    except DestinationError as exc:
        assert isinstance(store, S3Store) and "minimum" in str(exc)
        assert store.size_of("c/small.bin") is None
        assert store.pending_uploads() == []
    else:
        assert not isinstance(store, S3Store), "S3 cannot copy parts under 5 MiB"
        assert store.read_bytes("c/small.bin") == b"".join(n.encode() for n in small)


def contract_copier(store: Store) -> None:
    """copy publishes identical bytes under the target, replacing it, leaving no
    temporary file; on one local file system it is a hard link (no byte copied)."""
    assert isinstance(store, Copier)
    data = os.urandom(300_000)
    _publish(store, "k/source.bin", data)
    store.write_bytes("k/sub/target.bin", b"older")
    store.copy("k/source.bin", "k/sub/target.bin")
    assert store.read_bytes("k/sub/target.bin") == data
    assert store.read_bytes("k/source.bin") == data
    store.copy("k/source.bin", "k/fresh.bin")  # a target that did not exist
    assert dict(store.list_files("k/")) == {
        "k/source.bin": len(data),
        "k/sub/target.bin": len(data),
        "k/fresh.bin": len(data),
    }
    assert store.pending_uploads() == []
    if isinstance(store, LocalFiles):
        source, target = store.path_of("k/source.bin"), store.path_of("k/sub/target.bin")
        assert os.stat(source).st_ino == os.stat(target).st_ino, "not a hard link"
        assert sorted(os.listdir(target.parent)) == ["target.bin"], "a temporary file is left"
        assert sorted(os.listdir(source.parent)) == ["fresh.bin", "source.bin", "sub"]
    with pytest.raises(DestinationError):
        store.copy("k/absent.bin", "k/other.bin")
    assert store.size_of("k/other.bin") is None


def contract_local_files(store: Store) -> None:
    """Published names are plain files under ``root``; path_of refuses any name that
    would leave it (``..``, absolute, through a symbolic link)."""
    assert isinstance(store, LocalFiles)
    store.write_bytes("l/a.txt", b"hello")
    path = store.path_of("l/a.txt")
    assert path.read_bytes() == b"hello" and path.is_relative_to(store.root.resolve())
    assert store.work.is_relative_to(store.root)
    outside = store.root.parent / "outside"
    outside.mkdir(exist_ok=True)
    os.symlink(outside, store.root / "l" / "link")
    for name in ("../escape.txt", "l/../../escape.txt", "/etc/passwd", "l/link/x.txt"):
        with pytest.raises(DestinationError):
            store.path_of(name)
    assert store.path_of("l/./b/../a.txt") == path


def contract_part_reader(store: Store) -> None:
    """read_into fills a caller's buffer from any offset, again and again on reused
    connections, and refuses a range past the end of the file."""
    assert isinstance(store, PartReader)
    data = os.urandom(3 * MiB + 11)
    _publish(store, "p/parts.bin", data)
    into = bytearray(MiB)
    store.read_into("p/parts.bin", 2 * MiB + 5, memoryview(into))
    assert into == data[2 * MiB + 5 : 3 * MiB + 5]
    for _ in range(20):  # connections go back to the pool: no leak, no stale body
        store.read_into("p/parts.bin", 7, memoryview(into)[:100])
        assert into[:100] == data[7:107]
    with pytest.raises(DestinationError):
        store.read_into("p/parts.bin", 3 * MiB, memoryview(bytearray(100)))


def contract_exclusive(store: Store, twin: Store) -> None:
    """A second holder of the same destination is refused, naming the first; after the
    first lets go the destination can be taken again."""
    assert isinstance(store, Exclusive) and isinstance(twin, Exclusive)
    with store.exclusive():
        with pytest.raises(DestinationError, match="another xview2 run") as info, twin.exclusive():
            pass
        assert f"pid {os.getpid()}" in str(info.value)
    with twin.exclusive():
        pass


def contract_part_sizer(store: Store) -> None:
    """A store's own part size is never below the engine's plan, stays within the memory
    budget (room for the buffers of at least two connections and the digest's reserve),
    and makes no more parts than the store takes."""
    assert isinstance(store, PartSizer)
    budget = 160 * MiB
    for size in (0, 1, 5 * MiB, 1 << 30, 10 << 30):
        for planned in (store.min_part_size, 8 * MiB):
            part = store.part_size_for(size, planned, budget)
            assert planned <= part <= max(planned, budget // 3), (size, planned, part)
            if -(-size // planned) <= store.max_parts:
                assert -(-size // part) <= store.max_parts


def contract_rereadable_parts(store: Store) -> None:
    """An upload that says it holds a part gives it back whole, from any run; a part
    not written (or only begun) is not claimed."""
    part = store.min_part_size
    data = os.urandom(3 * part - 7)
    upload = store.open_upload("re/parts.bin", len(data), part)
    assert isinstance(upload, RereadableParts)
    upload.write_part(1, memoryview(data)[part : 2 * part])
    upload.keep_partial(2, memoryview(data)[2 * part : 2 * part + 100])
    assert upload.has_part(1) and not upload.has_part(0) and not upload.has_part(2)
    into = bytearray(part)
    assert upload.read_part(1, memoryview(into)) and into == data[part : 2 * part]
    upload.checkpoint({"hashed": 0})
    upload.close()
    again = store.open_upload("re/parts.bin", len(data), part)
    assert isinstance(again, RereadableParts)
    assert again.has_part(1) and not again.has_part(2)
    into = bytearray(part)
    assert again.read_part(1, memoryview(into)) and into == data[part : 2 * part]
    again.abort()


def contract_grouped_parts(store: Store) -> None:
    """Parts written from many threads in shuffled order: a part waits for its group's
    earlier parts, no part is durable before its group is whole, and the file publishes
    whole; an interrupted upload fails a waiting write at once."""
    import random
    import threading
    from concurrent.futures import ThreadPoolExecutor

    part = store.min_part_size
    data = os.urandom(33 * part + 5)  # 34 parts
    view = memoryview(data)
    upload = store.open_upload("grouped.bin", len(data), part)
    assert isinstance(upload, GroupedParts)
    group = upload.group_parts
    assert group >= 2  # (a store groups parts to keep objects few)
    order = list(range(34))
    random.Random(7).shuffle(order)
    lock, begun = threading.Lock(), set()

    def write(i: int) -> None:
        with lock:
            begun.add(i)
        upload.write_part(i, view[i * part : (i + 1) * part])
        with lock:  # a group is done only once its last part was sent
            done = upload.done_parts()
            assert all(min(g * group + group, 34) - 1 in begun for g in {j // group for j in done})

    with ThreadPoolExecutor(34) as pool:
        list(pool.map(write, order))
    assert upload.done_parts() == set(range(34))
    upload.publish()
    assert store.read_bytes("grouped.bin") == data and store.pending_uploads() == []

    other = store.open_upload("stopped.bin", len(data), part)
    assert isinstance(other, GroupedParts)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(other.write_part, 1, view[part : 2 * part])  # part 0 never comes
        other.interrupt()
        with pytest.raises(DestinationError, match="stopped before part 2"):
            waiting.result(timeout=5)
    assert other.done_parts() == set()
    other.abort()


UPLOAD_CAPABILITIES = (RereadableParts, GroupedParts)
"""Capabilities an upload claims rather than its store."""


def _claims(store: Store, capability: type) -> bool:
    if capability not in UPLOAD_CAPABILITIES:
        return isinstance(store, capability)
    upload = store.open_upload("claims.bin", store.min_part_size, store.min_part_size)
    try:
        return isinstance(upload, capability)
    finally:
        upload.abort()


CONTRACTS: dict[type, Callable[[Store, Store], None]] = {
    RangeReader: lambda store, twin: contract_range_reader(store),
    Composer: lambda store, twin: contract_composer(store),
    Copier: lambda store, twin: contract_copier(store),
    LocalFiles: lambda store, twin: contract_local_files(store),
    PartReader: lambda store, twin: contract_part_reader(store),
    Exclusive: contract_exclusive,
    RereadableParts: lambda store, twin: contract_rereadable_parts(store),
    GroupedParts: lambda store, twin: contract_grouped_parts(store),
    PartSizer: lambda store, twin: contract_part_sizer(store),
}
"""Every capability the suite knows, with its contract."""


def test_every_capability_has_a_contract() -> None:
    assert _capabilities() == set(CONTRACTS), "a capability protocol without a contract here"


def test_every_capability_a_store_claims_is_known(store: Store) -> None:
    claimed = {cap for cap in _capabilities() if isinstance(store, cap)}
    unknown = claimed - set(CONTRACTS)
    assert not unknown, f"{store.url} claims {unknown} but the suite has no contract for it"


@pytest.mark.parametrize("capability", list(CONTRACTS), ids=lambda cap: cap.__name__)
def test_capability_contract(
    store: Store, capability: type, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not _claims(store, capability):
        pytest.skip(f"{type(store).__name__} does not claim {capability.__name__}")
    twin = STORES[request.node.callspec.params["store"]](request, tmp_path)  # same place
    CONTRACTS[capability](store, twin)


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
    kept_now = first.keep_partial(1, head)
    assert kept_now in (0, len(head))  # a store may keep nothing, never a wrong amount
    first.checkpoint({"hashed": 0})
    first.close()
    second = store.open_upload("k.bin", len(data), part)
    kept = second.kept_parts()
    assert kept.get(1, 0) == kept_now
    if kept_now:
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
