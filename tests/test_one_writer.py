"""One writer per destination: a second run on a destination that another run is writing
exits at once with a message naming that run; a run killed outright does not block the
next one (the kernel drops a lock file's lock; an S3, GCS or Azure lease of a process of
this machine that is gone is taken over at once).  GCS and Azure run on their emulators
(``tests/emulators.py``), which honour the create-only-if-absent condition."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from xview2_ingest.demo.server import Faults, SignedLinkServer

MiB = 1 << 20
NAME = "one.tar.gz"


@pytest.mark.parametrize("kind", ["local", "s3", "gcs", "azure"])
def test_two_runs_on_one_destination(tmp_path: Path, kind: str, request) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "src"
    root.mkdir()
    data = b"\x1f\x8b" + os.urandom(24 * MiB)
    (root / NAME).write_bytes(data)
    cat = tmp_path / "cat.json"
    cat.write_text(json.dumps({NAME: {"sha1": hashlib.sha1(data).hexdigest()}}))
    if kind == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = request.getfixturevalue("bucket")
        dest = f"s3://{bucket}/x"
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint)

        def landed() -> bytes | None:
            try:
                return s3.get_object(Bucket=bucket, Key=f"x/{NAME}")["Body"].read()  # type: ignore[no-any-return]
            except s3.exceptions.NoSuchKey:
                return None
    elif kind in ("gcs", "azure"):
        from xview2_ingest.stores import open_store

        where = request.getfixturevalue("gcs_bucket" if kind == "gcs" else "azure_container")
        dest = f"{'gs' if kind == 'gcs' else 'az'}://{where}/x"
        env = dict(os.environ)  # the emulator's variable, set by its fixture
        store = open_store(dest)

        def landed() -> bytes | None:
            return store.read_bytes(NAME)
    else:
        dest, env = str(tmp_path / "dest"), dict(os.environ)

        def landed() -> bytes | None:
            path = tmp_path / "dest" / NAME
            return path.read_bytes() if path.exists() else None

    with SignedLinkServer(root, faults=Faults(rate=2 * MiB)) as srv:

        def run(**kw):  # type: ignore[no-untyped-def]
            argv = [
                sys.executable, "-m", "xview2_ingest.cli", "download", srv.url_for(NAME),
                "--dest", dest, "--catalog", str(cat), "--connections", "4", "--quiet",
            ]  # fmt: skip
            return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, **kw)

        first = run()
        deadline = time.monotonic() + 30
        while srv.bytes_served < 2 * MiB and time.monotonic() < deadline:
            time.sleep(0.05)
        began = time.monotonic()
        second = run()
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1, err.decode()
        assert b"another xview2 run (pid " + str(first.pid).encode() in err, err.decode()
        assert b"wait for it to finish or stop it" in err
        assert time.monotonic() - began < 20
        assert first.poll() is None, "the first run must go on undisturbed"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        srv.faults.rate = None
        third = run()  # right after the kill: neither the lock nor the lease blocks it
        _, err = third.communicate(timeout=120)
        assert third.returncode == 0, err.decode()
    assert landed() == data


def test_an_s3_lease_in_a_missing_bucket_says_what_to_create(moto_endpoint: str) -> None:
    """The lease's failures read as the S3 store's own: a missing bucket is named, with
    what fixes it, as for GCS and Azure."""
    from xview2_ingest.errors import DestinationError
    from xview2_ingest.stores import open_store

    store = open_store("s3://no-such-bucket-for-a-lease/x", endpoint_url=moto_endpoint)
    with pytest.raises(DestinationError, match="does not exist") as info, store.exclusive():
        pass
    assert "create" in (info.value.hint or "")
