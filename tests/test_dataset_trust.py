"""The pax bomb through both commands in their own processes (peak memory measured by the
kernel), on a folder and on moto's S3 server; the demo kept away from real data."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from xview2_ingest import demo, status
from xview2_ingest.catalog import Catalog
from xview2_ingest.demo.synth import ARCHIVE_NAMES
from xview2_ingest.errors import ExitCode, UsageError
from xview2_ingest.manifest import Manifest
from xview2_ingest.stores import LocalStore, Store
from xview2_ingest.stores.s3 import S3Store

MiB, GiB = 1 << 20, 1 << 30
TRAIN = ARCHIVE_NAMES["train"]
RSS_LIMIT_MB = 256


def pax_bomb() -> bytes:
    """About 1 MB of gzip announcing and holding one pax header of 1 GiB, then a label."""
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, GiB
    label = tarfile.TarInfo("train/labels/socal-fire_00000001_post_disaster.json")
    label.size = 2
    chunk = gzip.compress(b"a" * MiB, compresslevel=9)
    return b"".join(
        [
            gzip.compress(pax.tobuf(tarfile.USTAR_FORMAT)),
            chunk * (GiB // MiB),
            gzip.compress(
                label.tobuf(tarfile.USTAR_FORMAT) + b"{}".ljust(512, b"\0") + bytes(1024)
            ),
        ]
    )


MEASURE = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(child.pid, 0)\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)
"""Runs a command and prints its peak RSS (KiB).  The command is started from this small
process, not from pytest's: a child's peak counts what it inherited at the fork."""


def run_measured(args: list[str]) -> tuple[int, float, str]:
    """``xview2 ARGS`` in its own process: exit code, its peak RSS in MB, standard error."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "xview2_ingest.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    return done.returncode, int(done.stdout.split()[-1]) / 1024, done.stderr


@pytest.mark.parametrize("where", ["local", "s3"])
@pytest.mark.parametrize("command", ["extract", "index"])
def test_pax_bomb_in_both_commands_stays_small(
    where: str, command: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = pax_bomb()
    assert len(data) < 2 * MiB
    store: Store
    if where == "local":
        dest = str(tmp_path / "dest")
        store, extra = LocalStore(dest), []
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        dest = f"s3://{request.getfixturevalue('bucket')}/x2"
        store, extra = S3Store(dest, endpoint_url=endpoint), ["--endpoint-url", endpoint]
    store.write_bytes(TRAIN, data)
    Manifest(store).record(
        TRAIN,
        size=len(data),
        digests={"sha1": hashlib.sha1(data).hexdigest()},
        verified=True,
        source=None,
    )
    args = ["extract", TRAIN] if command == "extract" else ["index", "--from-archives"]
    code, rss_mb, err = run_measured([*args, "--dest", dest, "-q", *extra])
    print(f"{command} {where}: exit {code}, peak RSS {rss_mb:.0f} MB")
    assert code == ExitCode.FAILURE, err
    assert "oversized metadata header (1,073,741,824 bytes)" in err
    assert rss_mb < RSS_LIMIT_MB
    # nothing published, and the archive, intact, is not called corrupt
    assert not [n for n, _ in store.list_files("train/")]
    assert store.size_of("index/images.parquet") is None
    assert not Manifest(store).is_corrupt(TRAIN)


# -- the demo ------------------------------------------------------------------------------
def test_demo_uses_its_own_folder_and_refuses_real_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "real"
    store = LocalStore(real)
    official = Catalog().lookup(TRAIN)
    assert official.sha1
    store.write_bytes(TRAIN, b"stands in for the real archive")
    Manifest(store).record(
        TRAIN, size=30, digests={"sha1": official.sha1}, verified=True, source=None
    )
    before = {p: p.read_bytes() for p in real.rglob("*") if p.is_file()}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XVIEW2_DEST", str(real))  # the demo does not follow it

    with pytest.raises(UsageError, match="may be real") as caught:
        demo(real, pairs=1)
    assert caught.value.exit_code == ExitCode.USAGE and "xview2-demo" in str(caught.value)
    report = demo(pairs=1)
    assert report.ok, report.summary()
    demo_dest = tmp_path / "data" / "xview2-demo"
    assert Path(report.dest).resolve() == demo_dest.resolve()
    assert (demo_dest / "index" / "images.parquet").exists()
    assert before == {p: p.read_bytes() for p in real.rglob("*") if p.is_file()}
    # there, against the built-in catalog, the synthetic archives are not "verified"
    states = {f.name: f for f in status(demo_dest).files if f.name in ARCHIVE_NAMES.values()}
    present = [f for f in states.values() if f.state != "missing"]
    assert present and all(f.state == "unverified" for f in present)
    assert all("not the catalog's" in f.detail for f in present)
    # an official name present without a recorded SHA-1 is refused too
    other = tmp_path / "other"
    other.mkdir()
    (other / TRAIN).write_bytes(b"x")
    with pytest.raises(UsageError):
        demo(other, pairs=1)
    assert json.loads(json.dumps(report.to_dict()))["dest"] == report.dest
