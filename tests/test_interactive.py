"""In a terminal, expired links are replaced by pasted fresh ones in the same run; Ctrl-C
and SIGTERM stop cleanly (exit 130 and 143), keep every byte fetched, locally and on S3,
and say truthfully how much; a second Ctrl-C exits at once."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.stores.s3 import S3Store

MiB = 1 << 20
NAME = "data.tar.gz"


def make_file(tmp_path: Path, size: int) -> tuple[Path, bytes, Path]:
    root = tmp_path / "src"
    root.mkdir()
    data = b"\x1f\x8b" + os.urandom(size)
    (root / NAME).write_bytes(data)
    cat = tmp_path / "cat.json"
    cat.write_text(json.dumps({NAME: {"sha1": hashlib.sha1(data).hexdigest()}}))
    return root, data, cat


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def download_argv(url: str, dest: Path, cat: Path) -> list[str]:
    """`xview2 download` of one link in small parts over two connections."""
    return [
        sys.executable, "-m", "xview2_ingest.cli", "download", url, "--dest", str(dest),
        "--catalog", str(cat), "--connections", "2", "--part-size-mb", "1",
    ]  # fmt: skip


def test_fresh_links_pasted_at_the_prompt_continue_the_run(tmp_path: Path) -> None:
    root, data, cat = make_file(tmp_path, 6 * MiB)
    dest = tmp_path / "dest"
    # At 1 MiB/s per connection the file takes 3 s over two, so parts are still asked
    # for after the link expires (1.5 s after it was made; at 2 MiB/s a quick start could
    # ask for the last part before that); a request longer than one part (a span, when
    # the round trip makes spans worth it) breaks after 1.5 MiB, so it must ask again.
    faults = Faults(rate=1 * MiB, reset_after=3 * MiB // 2, reset_count=100)
    with SignedLinkServer(root, faults=faults) as srv:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            download_argv(srv.url_for(NAME, ttl=1.5), dest, cat),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        try:
            seen = read_until(master, b"empty to stop", 60)
            assert b"links expired for: data.tar.gz" in seen, seen.decode(errors="replace")
            srv.faults.rate, srv.faults.reset_count = None, 0
            os.write(master, srv.url_for(NAME).encode() + b"\n\n")
            seen += read_until(master, b"verified", 60)
            assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
            os.close(master)
    assert (dest / NAME).read_bytes() == data
    assert b"Signature" not in seen


def test_ctrl_c_keeps_finished_bytes_and_exits_130(tmp_path: Path) -> None:
    root, data, cat = make_file(tmp_path, 12 * MiB)
    dest = tmp_path / "dest"
    with SignedLinkServer(root, faults=Faults(rate=2 * MiB)) as srv:
        cmd = download_argv(srv.url_for(NAME), dest, cat)
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err.decode()
        assert b"Traceback" not in err
        served = srv.bytes_served
        assert not (dest / NAME).exists()
        srv.faults.rate = None
        again = subprocess.run(cmd, capture_output=True, timeout=60)
        assert again.returncode == 0, again.stderr.decode()
        refetched = srv.bytes_served - served
    assert (dest / NAME).read_bytes() == data
    assert refetched < len(data) - served + 3 * MiB


UNITS = {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def kept_of(err: bytes) -> tuple[float, float]:
    """(kept, total) in bytes from 'kept 12.3 MB of 40.0 MB', as the command prints it."""
    found = re.search(rb"kept ([\d.]+) (bytes|kB|MB|GB) of ([\d.]+) (bytes|kB|MB|GB)", err)
    assert found, err.decode()
    a, ua, b, ub = (x.decode() for x in found.groups())
    return float(a) * UNITS[ua], float(b) * UNITS[ub]


@pytest.mark.parametrize("kind", ["local", "s3"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_keeps_every_byte_fetched_and_says_how_many(
    tmp_path: Path, kind: str, sig: signal.Signals, request
) -> None:  # type: ignore[no-untyped-def]
    """Stopped mid-part over 4 connections: the command exits 130 (SIGINT) or 143
    (SIGTERM), prints how much it kept, and the rerun fetches exactly the rest: every
    byte that arrived was kept (pieces of parts too), and the figure printed is true."""
    parts = 8  # of S3's size: stopped at 65 %, each lane has finished a part
    root, data, cat = make_file(tmp_path, parts * S3Store.default_part_size - 2)
    if kind == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = request.getfixturevalue("bucket")
        dest: str = f"s3://{bucket}/x"
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
        s3 = boto3.client("s3", endpoint_url=endpoint)
    else:
        dest, env = str(tmp_path / "dest"), dict(os.environ)
    rate = 2 * MiB
    with SignedLinkServer(root, faults=Faults(rate=rate)) as srv:
        cmd = [
            sys.executable, "-m", "xview2_ingest.cli", "download", srv.url_for(NAME),
            "--dest", dest, "--catalog", str(cat), "--connections", "4",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 30
        while srv.bytes_served < 0.65 * len(data) and time.monotonic() < deadline:
            time.sleep(0.05)  # mid-transfer: some parts done, others half way
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        expected = 130 if sig == signal.SIGINT else 143
        assert proc.returncode == expected, err.decode()
        assert b"Traceback" not in err
        time.sleep(1.0)  # the server counts a chunk before it finds the client gone
        served = srv.bytes_served - 2  # the probe's two bytes
        kept, total = kept_of(err)
        assert total == pytest.approx(len(data), abs=0.05e6)
        if kind == "s3":
            state = s3.get_object(Bucket=bucket, Key=f"x/.xview2/state/{NAME}.json")
            engine = json.loads(state["Body"].read())["engine"]
            assert engine and engine["hashed"] > 0, "the stop saved no state to the bucket"
        srv.faults.rate = None
        again = subprocess.run(cmd, capture_output=True, timeout=120, env=env)
        assert again.returncode == 0, again.stderr.decode()
        refetched = srv.bytes_served - 2 - served - 2
    print(
        f"{kind} {sig.name}: {served / 1e6:.1f} MB fetched before the stop, "
        f"kept {kept / 1e6:.1f} MB, the rerun fetched {refetched / 1e6:.1f} MB"
    )
    # what the message says was kept is what the rerun did not fetch (to its rounding)
    assert refetched == pytest.approx(len(data) - kept, abs=0.06e6)
    # and every byte that arrived was kept: only bytes still in the sockets' buffers
    # when the stop came (sent by the server, never read) can be missing
    assert kept >= served - 4 * 1.5 * MiB, (kept, served)
    if kind == "local":
        assert (tmp_path / "dest" / NAME).read_bytes() == data


def test_a_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    root, data, cat = make_file(tmp_path, 12 * MiB)
    dest = tmp_path / "dest"
    with SignedLinkServer(root, faults=Faults(rate=1 * MiB)) as srv:
        cmd = download_argv(srv.url_for(NAME), dest, cat)
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err.decode()
        assert b"Traceback" not in err
        srv.faults.rate = None
        again = subprocess.run(cmd, capture_output=True, timeout=60)
        assert again.returncode == 0, again.stderr.decode()
    assert (dest / NAME).read_bytes() == data


def test_a_stop_with_nobody_reading_stderr_still_stops_cleanly(tmp_path: Path) -> None:
    """The reader of stderr is gone (a pipe closed, a dead ``tee``): the signal's
    message cannot be written, and the stop still happens: exit 143, state kept, and a
    second signal still exits at once."""
    root, data, cat = make_file(tmp_path, 12 * MiB)
    dest = tmp_path / "dest"
    with SignedLinkServer(root, faults=Faults(rate=1 * MiB)) as srv:
        cmd = [*download_argv(srv.url_for(NAME), dest, cat), "--quiet"]
        for signals in (1, 2):
            proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            assert proc.stderr is not None
            proc.stderr.close()  # nobody reads what it says from now on
            time.sleep(1.5)
            for _ in range(signals):
                proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(timeout=30) == 143
            finally:
                proc.kill()
        srv.faults.rate = None
        again = subprocess.run(cmd, capture_output=True, timeout=60)
        assert again.returncode == 0, again.stderr.decode()
    assert (dest / NAME).read_bytes() == data
