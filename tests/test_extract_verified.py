"""Verified extraction, on a real folder and on moto's S3 server: a member is published
only once the whole archive matched its SHA-1; a damaged archive is marked corrupt and
fetched again; ``check`` repairs altered members; repeated names resolve as tar does;
archives are removed only after a verified extraction, and stay removed."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from xview2_ingest import build_index, download, extract, ingest, status, verify
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.demo.synth import ARCHIVE_NAMES, SynthStats
from xview2_ingest.errors import ExitCode
from xview2_ingest.events import Event
from xview2_ingest.extract import (
    ArchiveChecksumError,
    ArchiveNotDownloadedError,
    ArchiveTruncatedError,
    UnsafeMemberError,
)
from xview2_ingest.extract.records import VERSION, index_name, record_name
from xview2_ingest.manifest import Manifest
from xview2_ingest.stores import LocalStore, Store
from xview2_ingest.stores.s3 import S3Store

MiB = 1 << 20
TRAIN, TEST = ARCHIVE_NAMES["train"], ARCHIVE_NAMES["test"]


# -- helpers ----------------------------------------------------------------------------
class Where:
    """One destination (a local folder or an S3 prefix on moto) seen through its store."""

    def __init__(self, store: Store, dest: str, endpoint: str | None):
        self.store, self.dest, self.endpoint = store, dest, endpoint

    def tree(self) -> dict[str, bytes]:
        """Every published member (not the archives, the manifest, the work areas)."""
        names = [n for n, _ in self.store.list_files("") if "/" in n]
        return {n: self.store.read_bytes(n) or b"" for n in names if not n.startswith(".")}

    def extract(self, names: list[str] | None = None, **kw: object):  # type: ignore[no-untyped-def]
        return extract(names, self.dest, endpoint_url=self.endpoint, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    if request.param == "local":
        return Where(LocalStore(tmp_path / "dest"), str(tmp_path / "dest"), None)
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("bucket")
    url = f"s3://{bucket}/x2"
    return Where(S3Store(url, endpoint_url=endpoint), url, endpoint)


def publish(store: Store, name: str, data: bytes, *, sha1: bool = True) -> None:
    store.write_bytes(name, data)
    digests = {"sha1": hashlib.sha1(data).hexdigest()} if sha1 else {}
    Manifest(store).record(name, size=len(data), digests=digests, verified=True, source=None)


def members_of(data: bytes) -> dict[str, bytes]:
    """Regular members as GNU tar leaves them: for a repeated name, the last copy."""
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for info in tar:
            if info.isfile():
                out[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    return out


def damaged(data: bytes) -> bytes:
    """The same size, 64 zero bytes in the middle: damage at rest."""
    middle = len(data) // 2
    return data[:middle] + bytes(64) + data[middle + 64 :]


def tgz(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def never_wrong(where: Where, good: dict[str, bytes]) -> Callable[[Event], None]:
    """A progress callback that checks, at every step, that every published member holds
    the good archive's bytes."""

    def check(event: Event) -> None:
        if event.kind in ("bytes", "info", "published"):
            for name, data in where.tree().items():
                assert data == good[name], f"{name} published with wrong bytes"

    return check


# -- 1. damaged at rest, then restored --------------------------------------------------
def test_archive_damaged_at_rest_publishes_nothing_then_restored(
    where: Where, dataset: tuple[Path, SynthStats]
) -> None:
    good = (dataset[0] / TRAIN).read_bytes()
    expected = members_of(good)
    publish(where.store, TRAIN, good)
    where.store.write_bytes(TRAIN, damaged(good))  # damaged after download, same size

    report = where.extract([TRAIN], progress=never_wrong(where, expected))
    result = report.archives[0]
    assert report.exit_code == ExitCode.FAILURE
    error = result.error
    assert isinstance(error, ArchiveChecksumError), error
    assert error.expected == hashlib.sha1(good).hexdigest()
    assert error.actual == hashlib.sha1(damaged(good)).hexdigest()
    assert "xview2 download" in str(error) and "no --force" in str(error)
    assert where.tree() == {}  # nothing wrong under a final name, nothing at all
    assert where.store.read_bytes(record_name(TRAIN)) is None
    entry = Manifest(where.store).get(TRAIN)
    assert entry and entry["corrupt"] and entry["corrupt_digests"]["sha1"] == error.actual
    state = {f.name: f for f in status(where.dest, endpoint_url=where.endpoint).files}
    assert state[TRAIN].state == "corrupt" and "download" in state[TRAIN].detail

    # the good archive is put back: extracted in full, the mark cleared
    where.store.write_bytes(TRAIN, good)
    again = where.extract([TRAIN], progress=never_wrong(where, expected))
    assert again.ok, again.summary()
    assert where.tree() == expected
    assert again.archives[0].verified
    assert not Manifest(where.store).is_corrupt(TRAIN)
    state = {f.name: f for f in status(where.dest, endpoint_url=where.endpoint).files}
    assert state[TRAIN].state != "corrupt"
    if isinstance(where.store, LocalStore):
        assert not list(Path(where.dest).rglob("*.tmp"))
    else:
        assert not list(where.store.list_files(".xview2-staging/"))


def test_corrupt_archive_is_fetched_again_without_force(
    tmp_path: Path, server: SignedLinkServer, dataset: tuple[Path, SynthStats], catalog_for
) -> None:  # type: ignore[no-untyped-def]
    root = dataset[0]
    dest = tmp_path / "dest"
    catalog = catalog_for(root)
    links = [server.url_for(TRAIN)]
    assert download(links, dest, catalog=catalog).ok
    good = (dest / TRAIN).read_bytes()
    (dest / TRAIN).write_bytes(damaged(good))
    assert not extract([TRAIN], dest, catalog=catalog).ok
    again = download(links, dest, catalog=catalog)
    assert again.ok and again.files[0].status == "verified" and again.bytes_fetched == len(good)
    assert (dest / TRAIN).read_bytes() == good
    report = extract([TRAIN], dest, catalog=catalog)
    assert report.ok and report.archives[0].members_written == len(members_of(good))


def test_a_damaged_geotiff_part_is_the_one_marked(tmp_path: Path) -> None:
    from xview2_ingest.catalog import GEOTIFF_ARCHIVE, GEOTIFF_PART_NAMES, Catalog

    rng = random.Random(5)
    whole = tgz(
        [(f"geotiffs/tier1/images/a_{i:08d}.tif", rng.randbytes(300_000)) for i in range(6)]
    )
    cut = len(whole) // 6
    parts = [whole[i * cut : (i + 1) * cut if i < 5 else None] for i in range(6)]
    store = LocalStore(tmp_path / "dest")
    for name, data in zip(GEOTIFF_PART_NAMES, parts, strict=True):
        publish(store, name, data)
    store.write_bytes(GEOTIFF_PART_NAMES[3], damaged(parts[3]))
    catalog = Catalog().with_overrides({GEOTIFF_ARCHIVE: {"sha1": hashlib.sha1(whole).hexdigest()}})
    result = extract(None, tmp_path / "dest", catalog=catalog).archives[0]
    assert isinstance(result.error, ArchiveChecksumError)
    assert result.error.file == GEOTIFF_PART_NAMES[3]
    marked = [n for n in GEOTIFF_PART_NAMES if Manifest(store).is_corrupt(n)]
    assert marked == [GEOTIFF_PART_NAMES[3]]
    assert not (tmp_path / "dest" / "geotiffs").exists()


# -- 2. extract --check ------------------------------------------------------------------
def test_check_repairs_an_altered_member(where: Where, dataset: tuple[Path, SynthStats]) -> None:
    good = (dataset[0] / TEST).read_bytes()
    expected = members_of(good)
    publish(where.store, TEST, good)
    assert where.extract([TEST]).ok
    victim = sorted(n for n in expected if n.endswith(".png"))[1]
    altered = bytes(b ^ 0xFF for b in expected[victim])  # same size, other bytes
    where.store.write_bytes(victim, altered)

    plain = where.extract([TEST]).archives[0]  # sizes only: not seen
    assert plain.status == "skipped" and plain.archive_bytes == 0
    checked = where.extract([TEST], check=True).archives[0]
    assert checked.status == "extracted", checked.error
    assert checked.members_checked == len(expected) and checked.members_changed == 1
    assert checked.members_written == 1 and checked.members_skipped == len(expected) - 1
    assert where.tree() == expected
    clean = where.extract([TEST], check=True).archives[0]
    assert clean.status == "skipped" and clean.members_changed == 0
    assert clean.members_checked == len(expected) and clean.archive_bytes == 0


def test_record_holds_size_and_crc32_of_every_member(
    tmp_path: Path, dataset: tuple[Path, SynthStats]
) -> None:
    import zlib

    good = (dataset[0] / TEST).read_bytes()
    store = LocalStore(tmp_path / "dest")
    publish(store, TEST, good)
    assert extract([TEST], tmp_path / "dest").ok
    record = json.loads(store.read_bytes(record_name(TEST)) or b"")
    assert record["version"] == VERSION == 2 and record["verified"]
    assert record["sources"] == [
        {"name": TEST, "size": len(good), "sha1": hashlib.sha1(good).hexdigest()}
    ]
    lines = gzip.decompress(store.read_bytes(index_name(TEST)) or b"").decode().splitlines()
    expected = members_of(good)
    assert len(lines) == len(expected) == record["members"]
    for line in lines:
        size, crc, name = line.split("\t")
        assert int(size) == len(expected[name]) and int(crc, 16) == zlib.crc32(expected[name])


def test_an_old_record_is_rebuilt(tmp_path: Path, dataset: tuple[Path, SynthStats]) -> None:
    """A version 1 record (sizes only) with the archive present: extracted again, recorded
    with digests; with the archive removed it still counts, but cannot be checked."""
    good = (dataset[0] / TEST).read_bytes()
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    publish(store, TEST, good)
    assert extract([TEST], dest).ok
    members = members_of(good)
    blob = gzip.compress("".join(f"{len(d)}\t{n}\n" for n, d in sorted(members.items())).encode())
    old = json.loads(store.read_bytes(record_name(TEST)) or b"")
    old.update(version=1, index_sha1=hashlib.sha1(blob).hexdigest(), verified=False)
    for key in ("digests",):
        old.pop(key)
    store.write_bytes(index_name(TEST), blob)
    store.write_bytes(record_name(TEST), json.dumps(old).encode())
    rebuilt = extract([TEST], dest).archives[0]
    assert rebuilt.status == "extracted" and rebuilt.members_written == len(members)
    assert json.loads(store.read_bytes(record_name(TEST)) or b"")["version"] == 2
    # an old record whose archive is gone: in place by size; check says why it cannot
    store.write_bytes(index_name(TEST), blob)
    store.write_bytes(record_name(TEST), json.dumps(old).encode())
    (dest / TEST).unlink()
    assert extract([TEST], dest).archives[0].status == "skipped"
    cannot = extract([TEST], dest, check=True).archives[0]
    assert cannot.status == "failed" and "no digests" in str(cannot.error)


# -- 3. repeated member names ---------------------------------------------------------------
@pytest.mark.parametrize("sizes", [(1000, 2000), (5 * MiB, 3000), (3000, 5 * MiB)])
def test_repeated_names_the_last_copy_wins(where: Where, sizes: tuple[int, int], seed: int) -> None:
    rng = random.Random(seed)
    first, last = rng.randbytes(sizes[0]), rng.randbytes(sizes[1])
    fillers = [
        (f"train/images/f{i}.png", rng.randbytes(rng.randrange(1, 200_000))) for i in range(40)
    ]
    archive = tgz([("train/images/dup.png", first), *fillers, ("train/images/dup.png", last)])
    publish(where.store, TRAIN, archive)
    for _ in range(3):  # the same every time, whatever the thread timing
        from xview2_ingest.extract import Extractor

        report = Extractor(where.store, workers=8, memory_budget=8 * MiB).run([TRAIN])
        result = report.archives[0]
        assert report.ok, report.summary()
        assert result.duplicates == 1 and result.members_total == 42
        assert result.members_written == 41
        assert where.store.read_bytes("train/images/dup.png") == last
        assert where.tree() == members_of(archive)
        where.store.delete(record_name(TRAIN))  # extract it all again
    if isinstance(where.store, LocalStore):
        assert not list(Path(where.dest).rglob("*.tmp"))


# -- 4. --remove-archives ------------------------------------------------------------------
def test_remove_archives_rerun_of_ingest_downloads_nothing(
    where: Where, server: SignedLinkServer, dataset: tuple[Path, SynthStats], catalog_for
) -> None:  # type: ignore[no-untyped-def]
    catalog = catalog_for(dataset[0])
    links = [server.url_for(TRAIN), server.url_for(TEST)]
    kw = dict(catalog=catalog, endpoint_url=where.endpoint, remove_archives=True)
    first = ingest(links, where.dest, **kw)  # type: ignore[arg-type]
    assert first.ok, first.summary()
    assert where.store.size_of(TRAIN) is None and where.store.size_of(TEST) is None
    manifest = Manifest(where.store)
    assert manifest.is_removed(TRAIN) and manifest.is_removed(TEST)
    states = {f.name: f.state for f in status(where.dest, endpoint_url=where.endpoint).files}
    assert states[TRAIN] == states[TEST] == "extracted"
    checked = verify(None, where.dest, endpoint_url=where.endpoint)  # nothing there to hash
    assert checked.ok and TRAIN not in [r.name for r in checked.files]
    tree = where.tree()

    again = ingest([server.url_for(TRAIN), server.url_for(TEST)], where.dest, **kw)  # type: ignore[arg-type]
    assert again.ok, again.summary()
    fetched = again.stages["download"]
    assert fetched is not None and fetched.to_dict()["files"][0]["status"] == "skipped"
    assert sum(f["bytes_fetched"] for f in fetched.to_dict()["files"]) == 0
    unpacked = again.stages["extract"]
    assert unpacked is not None
    assert {a["status"] for a in unpacked.to_dict()["archives"]} == {"skipped"}
    assert {n: d for n, d in where.tree().items() if not n.startswith("index/")} == {
        n: d for n, d in tree.items() if not n.startswith("index/")
    }


def test_archives_not_verified_are_not_removed(tmp_path: Path, dataset: tuple) -> None:
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    publish(store, TEST, (dataset[0] / TEST).read_bytes(), sha1=False)  # no SHA-1 known
    report = extract([TEST], dest, remove_archives=True)
    result = report.archives[0]
    assert report.ok and not result.verified
    assert result.kept == [TEST] and result.removed == [] and (dest / TEST).exists()
    assert "kept" in report.summary()


# -- 8. messages: missing, truncated, corrupt ---------------------------------------------
def test_missing_and_truncated_archives_say_so(tmp_path: Path, dataset: tuple) -> None:
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    good = (dataset[0] / TRAIN).read_bytes()
    publish(store, TRAIN, good)
    (dest / TRAIN).write_bytes(good[: len(good) // 2])
    publish(store, TEST, (dataset[0] / TEST).read_bytes())
    (dest / TEST).unlink()
    report = extract([TRAIN, TEST, "hold_images_labels_targets.tar.gz"], dest)
    truncated, gone, never = (a.error for a in report.archives)
    assert isinstance(truncated, ArchiveTruncatedError)
    assert f"{len(good) // 2:,}" in str(truncated) and "truncated" in str(truncated)
    assert "xview2 download" in str(truncated) and "no --force" in str(truncated)
    assert isinstance(gone, ArchiveNotDownloadedError) and "absent" in str(gone)
    assert isinstance(never, ArchiveNotDownloadedError) and "not downloaded" in str(never)
    states = {f.name: f for f in status(dest).files}
    assert states[TRAIN].state == "truncated" and "download" in states[TRAIN].detail
    assert states[TEST].state == "missing" and "absent" in states[TEST].detail
    assert states["hold_images_labels_targets.tar.gz"].state == "missing"


# -- 9. control characters ----------------------------------------------------------------
@pytest.mark.parametrize("bad", ["train/labels/a\nb.json", "train/x\tb.png", "train/\x1b[31m.png"])
def test_names_with_control_characters_are_refused(where: Where, bad: str) -> None:
    archive = tgz([("train/labels/ok.json", b"{}"), (bad, b"x")])
    publish(where.store, TRAIN, archive)
    error = where.extract([TRAIN]).archives[0].error
    assert isinstance(error, UnsafeMemberError) and "control character" in error.reason
    assert where.tree() == {}


# -- index over what was verified ---------------------------------------------------------
def test_stray_label_files_are_reported_not_indexed(
    where: Where, dataset: tuple[Path, SynthStats]
) -> None:
    good = (dataset[0] / TEST).read_bytes()
    publish(where.store, TEST, good)
    assert where.extract([TEST]).ok
    labels = sorted(n for n in members_of(good) if n.endswith(".json"))
    stray = "test/labels/socal-fire_99999999_post_disaster.json"
    where.store.write_bytes(stray, where.store.read_bytes(labels[0]) or b"")
    report = build_index(where.dest, endpoint_url=where.endpoint, workers=1)
    assert report.ok and report.verified
    assert report.images == len(labels) and report.stray == [stray]
    assert report.archives == [{"name": TEST, "sha1": hashlib.sha1(good).hexdigest()}]
    assert "1 stray" in report.summary()
    info = json.loads(where.store.read_bytes("index/index.json") or b"")
    assert info["archives"] == report.archives and info["stray"] == [stray]
    # a recorded label lost: reported (not ok), the rest indexed
    where.store.delete(labels[1])
    lost = build_index(where.dest, endpoint_url=where.endpoint, workers=1)
    assert not lost.ok and lost.images == len(labels) - 1
    assert lost.skipped[0][0] == labels[1] and "xview2 extract" in lost.skipped[0][1]


def test_index_from_archives_checks_the_sha1(tmp_path: Path, dataset: tuple) -> None:
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    good = (dataset[0] / TEST).read_bytes()
    publish(store, TEST, good)
    report = build_index(dest, from_archives=True, workers=1)
    assert report.archives == [
        {"name": TEST, "sha1": hashlib.sha1(good).hexdigest(), "verified": True}
    ]
    store.write_bytes(TEST, damaged(good))
    with pytest.raises(Exception, match="damaged") as caught:
        build_index(dest, from_archives=True, workers=1)
    assert "nothing was indexed" in str(caught.value)
    assert Manifest(store).is_corrupt(TEST)
    assert json.loads((dest / "index" / "index.json").read_text())["archives"] == report.archives


def test_index_skips_extractions_of_archives_replaced_since(tmp_path: Path, dataset: tuple) -> None:
    """The demo's leftovers: an extraction record whose archive the manifest no longer
    lists with the same SHA-1 does not count, and its files are stray."""
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    publish(store, TEST, (dataset[0] / TEST).read_bytes())
    assert extract([TEST], dest).ok
    other = tgz([("train/labels/socal-fire_00000001_pre_disaster.json", b"{}")])
    publish(store, TRAIN, other)
    assert extract([TRAIN], dest).ok
    entry = Manifest(store).get(TEST)
    assert entry is not None
    Manifest(store).record(
        TEST, size=entry["size"], digests={"sha1": "0" * 40}, verified=True, source=None
    )
    report = build_index(dest, workers=1)
    assert [a["name"] for a in report.archives] == [TRAIN]
    assert report.stray and all(n.startswith("test/labels/") for n in report.stray)


@pytest.mark.timeout(120)
def test_an_archive_ending_inside_a_small_member_is_given_up(where: Where) -> None:
    """Reading a member held in memory fails: the room reserved for it is given back,
    so dropping what was staged does not wait for a write that never comes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:  # plain tar: the cut lands exactly
        for i in range(3):
            info = tarfile.TarInfo(f"train/labels/m{i}.json")
            info.size = 100_000
            tar.addfile(info, io.BytesIO(bytes([i]) * info.size))
    cut = buf.getvalue()[: 512 * 2 + 100_000 + 512 + 50_000]  # inside the second member
    publish(where.store, TRAIN, cut)
    error = where.extract([TRAIN]).archives[0].error
    assert error is not None and "ends in the middle of a member" in str(error)
    assert where.tree() == {}
