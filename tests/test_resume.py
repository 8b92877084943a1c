"""Crash tests: SIGKILL the command at random points, rerun with fresh links, and check
the result is right and that less than 10% of the file was fetched again."""

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


def start(
    url: str, dest: str, catalog: Path, part_mb: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xview2_ingest.cli",
            "download",
            url,
            "--dest",
            dest,
            "--catalog",
            str(catalog),
            "--quiet",
            "--connections",
            "2",
            "--part-size-mb",
            str(part_mb),
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def crash_and_resume(
    tmp_path: Path, dest: str, size: int, part_mb: int, rate: int, env: dict[str, str], fetch_back
) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    root = tmp_path / "src"
    root.mkdir()
    data = b"\x1f\x8b" + rng.randbytes(size - 2)
    (root / NAME).write_bytes(data)
    catalog = tmp_path / "cat.json"
    catalog.write_text(json.dumps({NAME: {"size": size, "sha1": hashlib.sha1(data).hexdigest()}}))
    expected_seconds = size / (2 * rate)
    with SignedLinkServer(root, faults=Faults(rate=rate)) as srv:
        proc = start(srv.url_for(NAME), dest, catalog, part_mb, env)
        kill_at = rng.uniform(0.15, 0.85) * expected_seconds
        time.sleep(kill_at)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the transfer ended before the kill"
        served_before = srv.bytes_served
        assert fetch_back() is None, "nothing may be published before verification"
        # a fresh link, as a user pasting it from the download page again
        rerun = start(srv.url_for(NAME), dest, catalog, part_mb, env)
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err.decode()
        served = srv.bytes_served
    assert fetch_back() == data
    fetched_again = served - size - 16  # the probes ask for two bytes each
    ratio = fetched_again / size
    print(
        f"seed={SEED} killed at {kill_at:.2f}s after {served_before / MiB:.1f} MiB; "
        f"fetched again {fetched_again / MiB:.2f} MiB ({ratio:.1%})"
    )
    assert ratio < 0.10, f"re-fetched {ratio:.1%} of the file (seed {SEED})"
    assert not status(dest).pending, "the finished upload left resume state behind"


@pytest.mark.parametrize("attempt", range(3))
def test_sigkill_local_then_resume(tmp_path: Path, attempt: int) -> None:
    global SEED
    SEED += attempt
    dest = tmp_path / "dest"
    crash_and_resume(
        tmp_path,
        str(dest),
        64 * MiB,
        1,
        8 * MiB,
        {},
        lambda: (dest / NAME).read_bytes() if (dest / NAME).exists() else None,
    )


@pytest.mark.parametrize("attempt", range(3))
def test_sigkill_s3_then_resume(
    tmp_path: Path, moto_endpoint: str, bucket: str, attempt: int
) -> None:
    global SEED
    SEED += 100 + attempt
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)

    def fetch_back() -> bytes | None:
        try:
            return s3.get_object(Bucket=bucket, Key=f"x/{NAME}")["Body"].read()  # type: ignore[no-any-return]
        except s3.exceptions.NoSuchKey:
            return None

    os.environ["AWS_ENDPOINT_URL"] = moto_endpoint
    try:
        crash_and_resume(
            tmp_path,
            f"s3://{bucket}/x",
            200 * MiB,
            5,
            32 * MiB,
            {"AWS_ENDPOINT_URL": moto_endpoint},
            fetch_back,
        )
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert uploads == [], "a stray multipart upload was left behind"
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.mark.parametrize("attempt", range(3))
def test_sigkill_gcs_then_resume(tmp_path: Path, gcs_bucket: str, attempt: int) -> None:
    from google.cloud import storage

    global SEED
    SEED += 200 + attempt
    bucket = storage.Client(project="test").bucket(gcs_bucket)

    def fetch_back() -> bytes | None:
        blob = bucket.get_blob(f"x/{NAME}")
        return None if blob is None else blob.download_as_bytes()

    crash_and_resume(tmp_path, f"gs://{gcs_bucket}/x", 200 * MiB, 4, 32 * MiB, {}, fetch_back)
    leftovers = [b.name for b in bucket.list_blobs(prefix="x/.xview2/")]
    assert leftovers == [], "stray part objects were left behind"


@pytest.mark.parametrize("attempt", range(3))
def test_sigkill_azure_then_resume(
    tmp_path: Path, azurite: str, azure_container: str, attempt: int
) -> None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import ContainerClient

    global SEED
    SEED += 300 + attempt
    container = ContainerClient.from_connection_string(azurite, azure_container)

    def fetch_back() -> bytes | None:
        try:
            return container.download_blob(f"x/{NAME}").readall()
        except ResourceNotFoundError:
            return None

    # Azurite (one node process) stages ~60 MB/s here: a slower source keeps parts from
    # piling up fetched but not yet staged, which a kill would cost
    crash_and_resume(tmp_path, f"az://{azure_container}/x", 160 * MiB, 4, 12 * MiB, {}, fetch_back)
    _, uncommitted = container.get_blob_client(f"x/{NAME}").get_block_list("uncommitted")
    assert uncommitted == [], "uncommitted blocks were left behind"
    assert [b.name for b in container.list_blobs(name_starts_with="x/.xview2/")] == []
