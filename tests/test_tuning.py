"""Connections per file: pinned by --connections, else tuned while the rate keeps rising,
never past --max-connections or what the memory budget can feed."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest

from xview2_ingest import Catalog, download
from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.events import Event
from xview2_ingest.transfer.tuning import START, ConnectionTuner

MiB = 1 << 20


def _drive(tuner: ConnectionTuner, rate_of: dict[int, float] | None, steps: int = 20) -> int:
    """Feed the tuner samples of a link whose rate is ``rate_of(lanes)`` bytes/s."""
    lanes = tuner.start()
    now, fetched = 0.0, 0
    tuner.observe(now, fetched)
    for _ in range(steps):
        now += 0.5
        fetched += int(0.5 * (rate_of or {}).get(lanes, 20e6 * lanes))
        lanes += tuner.observe(now, fetched)
    return lanes


def test_capped_connections_grow_to_the_ceiling() -> None:
    tuner = ConnectionTuner(pinned=None, limit=32)
    assert _drive(tuner, None) == 32
    assert tuner.lanes == 32
    assert [n for n, _ in tuner.history][:3] == [START, 2 * START, 4 * START]
    assert "32" in tuner.describe(32)


def test_a_flat_rate_settles_early() -> None:
    tuner = ConnectionTuner(pinned=None, limit=32)
    flat = {n: 400e6 for n in range(1, 65)}
    assert _drive(tuner, flat) == 2 * START
    assert tuner.settled_at and "stopped rising" in tuner.settled_at


def test_pinned_connections_never_change() -> None:
    tuner = ConnectionTuner(pinned=6, limit=32)
    assert _drive(tuner, None) == 6
    assert "pinned" in tuner.describe(6)


def test_the_ceiling_is_the_limit_even_when_pinned_higher() -> None:
    assert ConnectionTuner(pinned=40, limit=9).ceiling == 9
    assert _drive(ConnectionTuner(pinned=None, limit=5), None) == 5


# -- whole downloads -----------------------------------------------------------------


def _run(tmp_path: Path, seed: int, **kw: object) -> tuple[list[Event], int, bytes, int]:
    size = 32 * MiB
    root = tmp_path / "src"
    root.mkdir()
    data = b"\x1f\x8b" + random.Random(seed).randbytes(size - 2)
    (root / "f.tar.gz").write_bytes(data)
    catalog = Catalog().with_overrides(
        {"f.tar.gz": {"size": size, "sha1": hashlib.sha1(data).hexdigest()}}
    )
    events: list[Event] = []
    with SignedLinkServer(root, faults=Faults(rate=4 * MiB)) as srv:
        report = download(
            [srv.url_for("f.tar.gz")],
            tmp_path / "dest",
            catalog=catalog,
            progress=events.append,
            **kw,  # type: ignore[arg-type]
        )
        peak = srv.peak_open_requests
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    return events, peak, data, report.peak_buffer_bytes


def _chosen(events: list[Event]) -> int:
    infos = [e.detail for e in events if e.kind == "info" and "connections" in e.detail]
    assert len(infos) == 1, infos
    match = re.match(r"(\d+) connections", infos[0])
    assert match, infos[0]
    return int(match.group(1))


def test_connections_pin_the_count(tmp_path: Path, seed: int) -> None:
    events, seen, _, _ = _run(tmp_path, seed, connections=3, part_size=1 * MiB)
    assert _chosen(events) == 3
    # three lanes, each with at most one more request sent ahead of need
    assert 3 <= seen <= 6, seen


def test_tuning_stays_within_max_connections(tmp_path: Path, seed: int) -> None:
    events, seen, _, _ = _run(tmp_path, seed, max_connections=5, part_size=1 * MiB)
    chosen = _chosen(events)
    assert chosen <= 5 and seen <= 2 * 5, (chosen, seen)
    assert chosen > START, "a per-connection cap makes more connections pay"


@pytest.mark.parametrize("memory_mb", [16, 20])
def test_tuning_stays_within_the_memory_budget(tmp_path: Path, seed: int, memory_mb: int) -> None:
    part = 4 * MiB
    events, seen, _, peak = _run(tmp_path, seed, memory_mb=memory_mb, part_size=part)
    feedable = memory_mb * MiB // part - 1
    assert _chosen(events) <= feedable and seen <= 2 * feedable  # and one ahead each
    assert peak <= memory_mb * MiB
