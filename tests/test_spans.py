"""Span fetching: one ranged response fills many parts, breaks mid-span are retried from
the first missing byte, and an idle lane steals the tail of a slow one."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
import threading
import time
from pathlib import Path

import pytest

from xview2_ingest import Catalog, DownloadReport, download
from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.errors import ServerError
from xview2_ingest.links import parse_links_text
from xview2_ingest.transfer.digest import Digest
from xview2_ingest.transfer.http import HttpClient, RetryPolicy
from xview2_ingest.transfer.spans import SpanPlan, asks_ahead, span_parts, writes_behind
from xview2_ingest.transfer.streams import SpanStream

MiB = 1 << 20
KiB = 1 << 10
PART = 256 * KiB


def _serve(tmp_path: Path, size: int, seed: int) -> tuple[Path, bytes, Catalog]:
    root = tmp_path / "src"
    root.mkdir()
    data = b"\x1f\x8b" + random.Random(seed).randbytes(size - 2)
    (root / "f.tar.gz").write_bytes(data)
    catalog = Catalog().with_overrides(
        {"f.tar.gz": {"size": size, "sha1": hashlib.sha1(data).hexdigest()}}
    )
    return root, data, catalog


def _ranges(srv: SignedLinkServer) -> list[tuple[int, int]]:
    out = []
    for _, header in srv.requests:
        if header and header.startswith("bytes="):
            first, _, last = header[6:].partition("-")
            out.append((int(first), int(last)))
    return [r for r in out if r != (0, 1)]  # the probe


def _fetch(
    srv: SignedLinkServer,
    dest: Path,
    catalog: Catalog,
    connections: int,
    memory_mb: int,
    part: int = PART,
) -> DownloadReport:
    """The served file into the folder ``dest`` in parts of ``part`` bytes."""
    return download(
        [srv.url_for("f.tar.gz")],
        dest,
        catalog=catalog,
        connections=connections,
        part_size=part,
        memory_mb=memory_mb,
    )


# -- the plan ------------------------------------------------------------------------


def test_plan_hands_out_spans_in_order_and_shrinks_them_near_the_end() -> None:
    plan = SpanPlan(range(20), span_parts=6)
    spans = []
    while (span := plan.claim(lanes=2)) is not None and not plan.steals:
        spans.append((span.start, span.end))
        span.start = span.end  # as if fully read
    assert spans[0] == (0, 6)
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)
    covered = [i for s, e in spans for i in range(s, e)]
    assert covered == list(range(20)), "every part once, in order"
    assert spans[-1][1] - spans[-1][0] <= 2, "the last spans are short"


def test_parts_with_kept_bytes_begin_a_span() -> None:
    plan = SpanPlan(range(10), span_parts=8, starts={3, 7})
    got = []
    while (span := plan.claim(lanes=1)) is not None:
        got.append((span.start, span.end))
        span.start = span.end
    assert got == [(0, 3), (3, 7), (7, 10)]


def test_an_idle_lane_steals_the_back_half_of_the_busiest_span() -> None:
    plan = SpanPlan(range(16), span_parts=8)
    a = plan.claim(lanes=1)
    b = plan.claim(lanes=1)
    assert a is not None and b is not None and (a.start, a.end, b.start, b.end) == (0, 8, 8, 16)
    assert plan.next_part(a) == 0  # a is slow: one part begun
    b.start = b.end  # b is done
    stolen = plan.claim(lanes=2)
    assert stolen is not None and (stolen.start, stolen.end) == (5, 8)
    assert (a.start, a.end) == (1, 5), "the victim keeps the front half"
    assert plan.steals == 1
    a.start = a.end
    stolen.start = stolen.end - 1
    assert plan.claim(lanes=2) is None, "a single part left is not worth a request"


def test_a_lane_asking_ahead_never_steals_from_its_own_span() -> None:
    plan = SpanPlan(range(8), span_parts=8)
    own = plan.claim(lanes=1)
    assert own is not None and (own.start, own.end) == (0, 8)
    assert plan.next_part(own) == 0
    assert plan.claim(lanes=2, exclude=own) is None, "its own tail is not a next span"
    stolen = plan.claim(lanes=2)
    assert stolen is not None and (stolen.start, stolen.end) == (5, 8)


def test_requests_are_sent_ahead_only_over_a_round_trip() -> None:
    assert not asks_ahead(None), "before any reply, a lane asks when it needs the bytes"
    assert not asks_ahead(0.0004), "nginx on loopback"
    assert not asks_ahead(0.008), "a Python server on a loaded machine"
    assert asks_ahead(0.02) and asks_ahead(0.08), "a WAN's round trip"


def test_span_length_follows_the_memory_budget() -> None:
    assert span_parts(160 * MiB, 4 * MiB, 16) == 2
    assert span_parts(160 * MiB, 1 * MiB, 16) >= 16
    assert span_parts(16 * MiB, 4 * MiB, 8) == 1
    assert span_parts(1 << 40, 1 * MiB, 1) * MiB <= 64 * MiB


# -- over HTTP -----------------------------------------------------------------------


def test_one_request_fills_many_parts(tmp_path: Path, seed: int) -> None:
    """With a round trip to hide, spans grow to many parts per request."""
    root, data, catalog = _serve(tmp_path, 8 * MiB, seed)
    with SignedLinkServer(root, faults=Faults(latency=0.05, rate=8 * MiB)) as srv:
        report = _fetch(srv, tmp_path / "dest", catalog, 2, 64)
        ranges = _ranges(srv)
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    assert len(ranges) < (8 * MiB // PART) // 2, f"{len(ranges)} requests for 32 parts"
    assert max(last - first + 1 for first, last in ranges) >= 4 * PART


def test_a_lane_asks_for_its_next_span_a_round_trip_ahead(
    tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """One connection over a round trip: each next span is asked for while the current
    one still streams (two requests open at the server at once, never more), and no byte
    is asked for twice.  (Parts of 1 MiB: the server sends 256 KiB at a time, and a part
    that came whole with its headers would tell nothing of the rate.)"""
    root, data, catalog = _serve(tmp_path, 8 * MiB, seed)
    caplog.set_level(logging.INFO, logger="xview2_ingest.transfer.spans")
    with SignedLinkServer(root, faults=Faults(latency=0.05, rate=8 * MiB)) as srv:
        report = _fetch(srv, tmp_path / "dest", catalog, 1, 64, part=MiB)
        ranges, peak = _ranges(srv), srv.peak_open_requests
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    assert peak == 2, peak
    assert sorted(ranges) == ranges and sum(b - a + 1 for a, b in ranges) == len(data)
    (said,) = [r.getMessage() for r in caplog.records if "sent ahead" in r.getMessage()]
    ahead = int(said.split("(", 1)[1].split()[0])
    assert ahead >= len(ranges) - 2, said  # all but the first span's (and maybe the last)


def test_a_request_sent_ahead_that_fails_is_asked_again(tmp_path: Path, seed: int) -> None:
    """A reply asked for ahead is the lane's next attempt: a refusal is retried as if the
    lane had asked itself, and the bytes are the file's."""
    root, data, _ = _serve(tmp_path, 2 * MiB, seed)
    faults = Faults(latency=0.01)
    with SignedLinkServer(root, faults=faults) as srv:
        (link,) = parse_links_text(srv.url_for("f.tar.gz"))
        client = HttpClient(4, RetryPolicy(base_delay=0.01, max_delay=0.05))
        remote = client.probe(link)
        faults.status_first = [503]
        stream = SpanStream(client, link, remote)
        into = bytearray(MiB)
        stream.ask_ahead(MiB, 2 * MiB - 1)
        stream.fill(MiB, memoryview(into), lambda: 2 * MiB, lambda n: None, None)
        stream.close()
        statuses = srv.requests
    assert bytes(into) == data[MiB:]
    assert stream.requests == 2 and len(statuses) == 3, statuses  # probe, refused, again


# -- the first requests, sent with the probe --------------------------------------


PROBE = "bytes=0-1"


def _asked_before_the_probe_answered(srv: SignedLinkServer, latency: float) -> list[str]:
    """The ranges asked for while the probe was still being answered (the server holds
    every request ``latency`` seconds)."""
    timed = [(rng or "", at) for (_, rng), at in zip(srv.requests, srv.request_times, strict=True)]
    probed = next(at for rng, at in timed if rng == PROBE)
    return [rng for rng, at in timed if rng != PROBE and at < probed + latency]


def test_the_first_lanes_ask_for_their_parts_while_the_probe_is_on_its_way(
    tmp_path: Path, seed: int
) -> None:
    """A file the catalog knows, starting fresh: each of the first lanes' first parts is
    asked for before the probe has answered, on the lanes' own connections, and taken up
    by a lane (no byte is asked for twice)."""
    root, data, catalog = _serve(tmp_path, 8 * MiB, seed)
    latency = 0.3
    with SignedLinkServer(root, faults=Faults(latency=latency)) as srv:
        report = _fetch(srv, tmp_path / "dest", catalog, 4, 64, part=MiB)
        early, ranges = _asked_before_the_probe_answered(srv, latency), _ranges(srv)
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    assert sorted(early) == sorted(f"bytes={i * MiB}-{(i + 1) * MiB - 1}" for i in range(4))
    assert sum(b - a + 1 for a, b in ranges) == len(data), ranges


def test_a_file_left_unfinished_is_asked_for_only_after_its_probe(
    tmp_path: Path, seed: int
) -> None:
    """An upload of the file waits at the destination: it resumes from its own parts, so
    nothing is asked for before the probe has answered (replies for parts already here
    would be thrown away)."""
    root, data, catalog = _serve(tmp_path, 8 * MiB, seed)
    dest = tmp_path / "dest"
    with SignedLinkServer(root, faults=Faults(expire_after_requests=3)) as srv:
        first = _fetch(srv, dest, catalog, 2, 64, part=MiB)  # the link dies after 2 parts
    assert not first.ok and first.files[0].bytes_fetched > 0, first.summary()
    latency = 0.3
    with SignedLinkServer(root, faults=Faults(latency=latency)) as srv:
        second = _fetch(srv, dest, catalog, 4, 64, part=MiB)
        early = _asked_before_the_probe_answered(srv, latency)
    assert second.ok and second.files[0].bytes_resumed > 0, second.summary()
    assert (dest / "f.tar.gz").read_bytes() == data
    assert early == []


def test_a_reply_sent_for_before_the_probe_is_checked_against_what_it_saw(
    tmp_path: Path, seed: int
) -> None:
    """A request sent before the probe answered is checked for its status only; the lane
    that takes it up checks it against the file the probe saw, and refuses bytes of
    another version of the file."""
    root, _, _ = _serve(tmp_path, 2 * MiB, seed)
    with SignedLinkServer(root) as srv:
        (link,) = parse_links_text(srv.url_for("f.tar.gz"))
        client = HttpClient(4, RetryPolicy(base_delay=0.01, max_delay=0.05))
        stream = SpanStream(client, link, None)
        stream.ask_ahead(0, MiB - 1)
        seen = client.probe(link)
        stream.bind(dataclasses.replace(seen, etag='"another-version"'))
        with pytest.raises(ServerError, match="changed on the server"):
            stream.fill(0, memoryview(bytearray(MiB)), lambda: MiB, lambda n: None, None)
        stream.close()


def test_parts_far_ahead_of_the_digest_wait_on_disk(
    tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Locally, parts landed far ahead of the digest give up their buffers and are read
    back from the partial file when their turn comes: long spans in a small budget, and
    the published file is still exactly the bytes hashed."""
    root, data, catalog = _serve(tmp_path, 48 * MiB, seed)
    caplog.set_level(logging.INFO, logger="xview2_ingest.transfer.spans")
    with SignedLinkServer(root, faults=Faults(latency=0.05, rate=12 * MiB)) as srv:
        report = _fetch(srv, tmp_path / "dest", catalog, 4, 16)
        ranges = _ranges(srv)
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    said = [r.getMessage() for r in caplog.records if "hashed from the store" in r.getMessage()]
    assert said and not said[0].endswith(" 0 parts hashed from the store"), said
    assert max(last - first + 1 for first, last in ranges) > span_parts(16 * MiB, PART, 4) * PART


def test_lanes_leave_the_hashing_to_the_digest_thread(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane that lands the frontier part goes back to its connection: every byte is
    hashed, in order, on the file's digest thread, never on a lane."""
    root, data, catalog = _serve(tmp_path, 12 * MiB, seed)
    hashed: list[tuple[str, int]] = []
    update = Digest.update

    def watched(self: Digest, chunk: bytes | bytearray | memoryview) -> None:
        hashed.append((threading.current_thread().name, len(chunk)))
        update(self, chunk)

    monkeypatch.setattr(Digest, "update", watched)
    with SignedLinkServer(root, faults=Faults(latency=0.02, rate=8 * MiB)) as srv:
        report = _fetch(srv, tmp_path / "dest", catalog, 4, 16)
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    assert sum(n for _, n in hashed) == len(data)
    threads = {name for name, _ in hashed}
    assert all(name.startswith("xview2-digest-") for name in threads), threads


@pytest.mark.parametrize("resets", [1, 5])
def test_resets_mid_span_give_a_byte_identical_file(tmp_path: Path, seed: int, resets: int) -> None:
    root, data, catalog = _serve(tmp_path, 6 * MiB, seed)
    # Inside the first part of whatever request is cut: the one-part requests that measure
    # the link, then spans of many parts.
    cut = random.Random(seed).randrange(PART // 4, PART)
    faults = Faults(reset_after=cut, reset_count=resets + 3, latency=0.05, rate=8 * MiB)
    with SignedLinkServer(root, faults=faults) as srv:
        report = _fetch(srv, tmp_path / "dest", catalog, 2, 64)
        ranges = _ranges(srv)
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    resumed = [first for first, _ in ranges if first % PART]
    assert resumed, "a retry asks from the first missing byte, inside a part"
    fetched = report.files[0].bytes_fetched
    assert fetched <= len(data) + 2, "bytes already read are never asked for again"


def test_work_stealing_finishes_the_tail(
    tmp_path: Path, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    root, data, catalog = _serve(tmp_path, 4 * MiB, seed)
    # Each lane's first one-part request measures the link; then spans are long.  The
    # span that carries part 4 stalls there: the other lane must take over its back half.
    at = 4 * PART + PART // 2
    faults = Faults(stall_seconds=3.0, stall_at=at, latency=0.05, rate=8 * MiB)
    with SignedLinkServer(root, faults=faults) as srv:
        with caplog.at_level(logging.INFO, logger="xview2_ingest.transfer.spans"):
            report = _fetch(srv, tmp_path / "dest", catalog, 2, 64)
        ranges = _ranges(srv)
    assert report.ok, report.summary()
    assert (tmp_path / "dest" / "f.tar.gz").read_bytes() == data
    stolen = [r for r in caplog.messages if "tails stolen" in r]
    assert stolen and " 0 tails stolen" not in stolen[0], stolen
    stalled = next(r for r in ranges if r[0] <= at <= r[1])
    assert stalled[1] - stalled[0] + 1 > 2 * PART, ranges
    assert any(stalled[0] < first <= stalled[1] for first, _ in ranges), ranges


def test_parts_are_written_behind_the_lanes_only_over_a_round_trip() -> None:
    """On loopback (a reply within a few milliseconds) a lane writes its part itself:
    writer threads would cost more than they hide; over a WAN they keep it streaming."""
    assert not writes_behind(None), "before any reply, the lanes write"
    assert not writes_behind(0.0004), "nginx on loopback"
    assert writes_behind(0.02) and writes_behind(0.08), "a WAN's round trip"


def test_remote_parts_written_behind_the_lanes_are_the_bytes_hashed(
    tmp_path: Path,
    seed: int,
    moto_endpoint: str,
    bucket: str,
    s3,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over a source with a round trip to hide, parts go up to S3 from writer threads
    while the lanes read on, and the object is exactly the bytes hashed."""
    root, data, catalog = _serve(tmp_path, 50 * MiB, seed)
    caplog.set_level(logging.INFO, logger="xview2_ingest.transfer.spans")
    with SignedLinkServer(root, faults=Faults(latency=0.03)) as srv:
        report = download(
            [srv.url_for("f.tar.gz")],
            f"s3://{bucket}/x",
            catalog=catalog,
            connections=4,
            endpoint_url=moto_endpoint,
        )
    assert report.ok, report.summary()
    assert s3.get_object(Bucket=bucket, Key="x/f.tar.gz")["Body"].read() == data
    (said,) = [r.getMessage() for r in caplog.records if "written behind" in r.getMessage()]
    behind = int(said.rsplit(", ", 1)[1].split()[0])
    assert behind >= 3, said  # of 7 parts: all but the lanes' first


def test_a_remote_write_failing_behind_the_lanes_fails_the_file(
    tmp_path: Path, seed: int, moto_endpoint: str, bucket: str, s3
) -> None:  # type: ignore[no-untyped-def]
    """To a remote store parts are written off the lanes; when those writes start to
    fail (here the multipart upload vanishes mid-transfer), the file fails with the
    store's error, the lanes stop, and nothing is published."""
    import threading

    root, _, catalog = _serve(tmp_path, 24 * MiB, seed)
    reports: list = []
    with SignedLinkServer(root, faults=Faults(rate=2 * MiB, latency=0.02)) as srv:
        run = threading.Thread(
            target=lambda: reports.append(
                download(
                    [srv.url_for("f.tar.gz")],
                    f"s3://{bucket}/x",
                    catalog=catalog,
                    connections=4,
                    endpoint_url=moto_endpoint,
                )
            )
        )
        run.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not s3.list_multipart_uploads(Bucket=bucket).get(
            "Uploads"
        ):
            time.sleep(0.05)
        time.sleep(1.0)  # some parts are up
        for up in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]:
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        run.join(60)
    assert not run.is_alive(), "the download hung after its writes failed"
    (report,) = reports
    assert not report.ok
    (result,) = report.files
    assert result.error is not None and "s3://" in str(result.error), result.error
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "x/f.tar.gz" not in keys
