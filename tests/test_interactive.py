"""In a terminal, expired links are replaced by pasted fresh ones in the same run; Ctrl-C
keeps finished bytes and exits 130."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from xview2_ingest.demo.server import Faults, SignedLinkServer

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
    with SignedLinkServer(root, faults=Faults(rate=2 * MiB)) as srv:
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
            srv.faults.rate = None
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
