"""``--limit-rate``: one cap across every file and connection, measured against the
signed-link server (which runs far faster unthrottled)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from xview2_ingest import download
from xview2_ingest.catalog import Catalog
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.errors import UsageError
from xview2_ingest.settings import limit_rate_setting, parse_rate
from xview2_ingest.transfer.ratelimit import RateLimiter

MiB = 1 << 20


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10M", 10 * MiB),
        ("500K", 500 * 1024),
        ("1.5m", int(1.5 * MiB)),
        ("65536", 65536),
        ("2MiB/s", 2 * MiB),
        ("1G", 1 << 30),
        ("0", 0),
    ],
)
def test_rates_are_read_like_curls(text: str, rate: int) -> None:
    assert parse_rate(text) == rate


def test_the_setting_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XVIEW2_LIMIT_RATE", raising=False)
    assert limit_rate_setting(None) is None
    monkeypatch.setenv("XVIEW2_LIMIT_RATE", "3M")
    assert limit_rate_setting(None) == 3 * MiB
    assert limit_rate_setting("1K") == 1024  # the flag wins
    assert limit_rate_setting("0") is None
    monkeypatch.setenv("XVIEW2_LIMIT_RATE", "fast")
    with pytest.raises(UsageError, match="XVIEW2_LIMIT_RATE"):
        limit_rate_setting(None)
    with pytest.raises(UsageError, match="--limit-rate"):
        limit_rate_setting("10 parsecs")


def test_the_bucket_holds_many_threads_to_the_rate() -> None:
    rate = 4 * MiB
    limiter = RateLimiter(rate)
    taken = [0] * 6
    stop = time.monotonic() + 1.5

    def reader(i: int) -> None:
        while time.monotonic() < stop:
            taken[i] += limiter.acquire(256 * 1024)

    began = time.monotonic()
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    assert sum(taken) <= rate * elapsed + limiter.burst + 6 * limiter.chunk
    assert sum(taken) >= 0.85 * rate * 1.5
    assert min(taken) > 0  # nobody starves


def test_a_download_keeps_to_the_cap_across_files_and_connections(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.bin", "b.bin"):
        (src / name).write_bytes(os.urandom(6 * MiB))
    rate = 4 * MiB  # 12 MiB in all: 3 s at the cap
    with SignedLinkServer(src) as server:
        links = server.links_text().split()
        began = time.monotonic()
        free = download(links, tmp_path / "free", catalog=Catalog({}), connections=4)
        unthrottled = time.monotonic() - began
        began = time.monotonic()
        capped = download(
            links, tmp_path / "capped", catalog=Catalog({}), connections=4, limit_rate="4M"
        )
        elapsed = time.monotonic() - began
    assert free.ok and capped.ok
    measured = capped.bytes_fetched / elapsed
    print(f"cap {rate} B/s, measured {measured:.0f} B/s, unthrottled {12 * MiB / unthrottled:.0f}")
    assert unthrottled < elapsed / 3  # the cap, not the server, set the pace
    assert abs(measured - rate) / rate < 0.15
