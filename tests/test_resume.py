"""Crash tests: SIGKILL the command at random points, rerun with fresh links, and check
the result is right and that each kill cost no more than the parts held in memory; and
resumes over a source that changed its bytes under the same name never publish wrong.
``XVIEW2_CRASH_SEED`` replays a run (its seed is printed)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from xview2_ingest import status
from xview2_ingest.demo.server import Faults, SignedLinkServer

MiB = 1 << 20
NAME = "big.tar.gz"
SEED = int(os.environ.get("XVIEW2_CRASH_SEED", time.time()))


KILLS, CONNECTIONS, RATE = 3, 4, 20_000_000  # the resume promise's scenario


def start(
    url: str, dest: str, catalog: Path, env: dict[str, str], extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "xview2_ingest.cli", "download", url, "--dest", dest,
        "--catalog", str(catalog), "--quiet", "--connections", str(CONNECTIONS), *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def crash_and_resume(
    tmp_path: Path,
    dest: str,
    size: int,
    part: int,
    env: dict[str, str],
    fetch_back,  # type: ignore[no-untyped-def]
    extra: tuple[str, ...] = (),
    group: int = 1,
) -> None:
    """SIGKILL the download KILLS times at random moments, each run started with a fresh
    link, then let a last run finish: the file is right, and each kill cost at most the
    parts a file may hold in memory (CONNECTIONS plus a window of 2), the parts hashed
    in a group not yet whole (where parts go up in groups of ``group``), and the bytes in
    flight in the sockets (see docs/benchmarks-resume.md for the 1 GiB figures)."""
    rng = random.Random(SEED)
    root = tmp_path / "src"
    root.mkdir()
    data = b"\x1f\x8b" + rng.randbytes(size - 2)
    (root / NAME).write_bytes(data)
    catalog = tmp_path / "cat.json"
    catalog.write_text(json.dumps({NAME: {"size": size, "sha1": hashlib.sha1(data).hexdigest()}}))
    runs = 0
    with SignedLinkServer(root, faults=Faults(rate=RATE)) as srv:
        for kill in range(KILLS):
            # kill at a random point of what is left, leaving room for the later kills
            left = size - (srv.bytes_served - 2 * runs)
            target = srv.bytes_served + rng.uniform(0.15, 0.85) * left / (KILLS - kill)
            proc = start(srv.url_for(NAME), dest, catalog, env, extra)
            runs += 1
            deadline = time.monotonic() + 60
            while srv.bytes_served < target and time.monotonic() < deadline:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL, "the transfer ended before the kill"
            assert fetch_back() is None, "nothing may be published before verification"
        # a fresh link, as a user pasting it from the download page again
        rerun = start(srv.url_for(NAME), dest, catalog, env, extra)
        runs += 1
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err.decode()
        served = srv.bytes_served
    assert fetch_back() == data
    fetched_again = served - size - 2 * runs  # the probes ask for two bytes each
    # per kill: the parts a file holds in memory, plus what the server had sent into the
    # sockets' buffers that the killed process never read
    bound = KILLS * ((CONNECTIONS + 2 + group - 1) * part + CONNECTIONS * 2 * MiB)
    print(
        f"seed={SEED} {KILLS} kills: fetched again {fetched_again / MiB:.2f} MiB "
        f"({fetched_again / size:.1%} of {size / MiB:.0f} MiB; "
        f"{fetched_again / (1 << 30):.1%} of 1 GiB), bound {bound / MiB:.0f} MiB"
    )
    assert fetched_again <= bound, f"re-fetched {fetched_again / MiB:.1f} MiB (seed {SEED})"
    assert not status(dest).pending, "the finished upload left resume state behind"


def test_sigkill_local_three_times_then_resume(tmp_path: Path) -> None:
    from xview2_ingest.stores import LocalStore

    dest = tmp_path / "dest"
    crash_and_resume(
        tmp_path,
        str(dest),
        160 * MiB,
        LocalStore.default_part_size,
        {},
        lambda: (dest / NAME).read_bytes() if (dest / NAME).exists() else None,
    )


def test_sigkill_s3_three_times_then_resume(
    tmp_path: Path, moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xview2_ingest.stores.s3 import S3Store

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)

    def fetch_back() -> bytes | None:
        try:
            return s3.get_object(Bucket=bucket, Key=f"x/{NAME}")["Body"].read()  # type: ignore[no-any-return]
        except s3.exceptions.NoSuchKey:
            return None

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    crash_and_resume(
        tmp_path,
        f"s3://{bucket}/x",
        160 * MiB,
        S3Store.default_part_size,
        {"AWS_ENDPOINT_URL": moto_endpoint},
        fetch_back,
    )
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == [], "a stray multipart upload was left behind"


def test_sigkill_gcs_three_times_then_resume(tmp_path: Path, gcs_bucket: str) -> None:
    """In 4 MiB parts: 40 of them, which go up in groups of two (at most 32 part
    objects), so resume state is saved only where the parts hashed are in whole groups."""
    from google.cloud import storage

    bucket = storage.Client(project="test").bucket(gcs_bucket)

    def fetch_back() -> bytes | None:
        blob = bucket.get_blob(f"x/{NAME}")
        return None if blob is None else blob.download_as_bytes()

    extra = ("--part-size-mb", "4")
    crash_and_resume(tmp_path, f"gs://{gcs_bucket}/x", 160 * MiB, 4 * MiB, {}, fetch_back, extra, 2)
    leftovers = [b.name for b in bucket.list_blobs(prefix="x/.xview2/parts/")]
    assert leftovers == [], "stray part objects were left behind"


def test_sigkill_azure_three_times_then_resume(
    tmp_path: Path, azurite: str, azure_container: str
) -> None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import ContainerClient

    from xview2_ingest.stores.azure import AzureStore

    container = ContainerClient.from_connection_string(azurite, azure_container)

    def fetch_back() -> bytes | None:
        try:
            return container.download_blob(f"x/{NAME}").readall()
        except ResourceNotFoundError:
            return None

    crash_and_resume(
        tmp_path,
        f"az://{azure_container}/x",
        160 * MiB,
        AzureStore.default_part_size,
        {},
        fetch_back,
    )
    _, uncommitted = container.get_blob_client(f"x/{NAME}").get_block_list("uncommitted")
    assert uncommitted == [], "uncommitted blocks were left behind"
    assert [b.name for b in container.list_blobs(name_starts_with="x/.xview2/state/")] == []


# -- the same name, size and ETag, other bytes: published bytes are hashed bytes ----------


def _left_by_an_earlier_run(store, url: str, old: bytes, part: int, parts: int) -> None:  # type: ignore[no-untyped-def]
    """What a run stopped after persisting ``parts`` parts of ``old`` leaves behind: the
    parts, and a valid state of the engine that has hashed none of them yet."""
    from xview2_ingest.links import read_links
    from xview2_ingest.transfer.digest import Digest
    from xview2_ingest.transfer.http import HttpClient

    remote = HttpClient().probe(read_links([url])[0])
    upload = store.open_upload(NAME, len(old), part)
    for i in range(parts):
        upload.write_part(i, memoryview(old)[i * part : (i + 1) * part])
    upload.checkpoint(
        {"identity": remote.identity(), "hashed": 0, "digests": {"sha1": Digest("sha1").state()}}
    )
    upload.close()


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("catalogued", [True, False], ids=["sha1-known", "no-sha1"])
def test_changed_bytes_under_the_same_etag_never_publish_wrong(
    tmp_path: Path, kind: str, catalogued: bool, request
) -> None:  # type: ignore[no-untyped-def]
    """Run 1 persisted parts of the old bytes; the source now serves other bytes under
    the same size and ETag.  The result is the new bytes verified, or a refusal; and
    whatever is published has exactly the digest the manifest records."""
    from xview2_ingest import download
    from xview2_ingest.catalog import Catalog
    from xview2_ingest.errors import ChecksumMismatchError
    from xview2_ingest.manifest import Manifest
    from xview2_ingest.stores import LocalStore
    from xview2_ingest.stores.s3 import S3Store

    if kind == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        dest: str = f"s3://{request.getfixturevalue('bucket')}/x"
        store = S3Store(dest, endpoint_url=endpoint)
        part = store.min_part_size
    else:
        endpoint, dest, part = None, str(tmp_path / "dest"), 1 * MiB
        store = LocalStore(dest)
    rng = random.Random(SEED)
    old = b"\x1f\x8b" + rng.randbytes(3 * part + 1000 - 2)
    new = old[:2] + rng.randbytes(len(old) - 2)
    root = tmp_path / "src"
    root.mkdir()
    served = root / NAME
    served.write_bytes(old)
    stat = served.stat()
    with SignedLinkServer(root) as srv:
        _left_by_an_earlier_run(store, srv.url_for(NAME), old, part, 2)
        served.write_bytes(new)  # same size; the same mtime gives the same ETag
        os.utime(served, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        entry = {"size": len(new)} | ({"sha1": hashlib.sha1(new).hexdigest()} if catalogued else {})
        catalog = Catalog({}).with_overrides({NAME: entry})
        report = download([srv.url_for(NAME)], dest, catalog=catalog, endpoint_url=endpoint)
        result = report.files[0]
        published = store.read_bytes(NAME)
        if published is not None:
            recorded = (Manifest(store).get(NAME) or {}).get("sha1")
            assert recorded == hashlib.sha1(published).hexdigest(), "published is not hashed"
            assert result.digests["sha1"] == recorded
        if result.status == "verified":
            assert published == new
        elif catalogued:
            assert isinstance(result.error, ChecksumMismatchError), result
            assert published is None
            again = download([srv.url_for(NAME)], dest, catalog=catalog, endpoint_url=endpoint)
            assert again.files[0].status == "verified"
            assert store.read_bytes(NAME) == new
        else:
            assert result.status == "unverified"
    print(f"{kind}: {result.status}")
