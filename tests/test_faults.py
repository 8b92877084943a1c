"""Fault injection with real servers on 127.0.0.1: every misbehaviour ends verified or as a
precise error, and never publishes a wrong file or leaves a stray upload."""

from __future__ import annotations

import hashlib
import os
import time
from email.utils import formatdate
from pathlib import Path

import pytest

from xview2_ingest import download, status
from xview2_ingest.catalog import Catalog
from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.errors import (
    ChecksumMismatchError,
    ContentError,
    DestinationError,
    LinkError,
    LinkExpiredError,
    ServerError,
)
from xview2_ingest.events import Event
from xview2_ingest.transfer.http import RetryPolicy

MiB = 1 << 20
FAST = RetryPolicy(
    attempts=5, base_delay=0.05, max_delay=0.2, stall_timeout=1.0, connect_timeout=2.0
)
NAME = "file.tar.gz"


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    root = tmp_path_factory.mktemp("fault-src")
    data = b"\x1f\x8b" + os.urandom(9 * MiB + 4321)
    (root / NAME).write_bytes(data)
    return root, data


def catalog(data: bytes) -> Catalog:
    return Catalog({}).with_overrides(
        {NAME: {"size": len(data), "sha1": hashlib.sha1(data).hexdigest()}}
    )


def fetch(root: Path, faults: Faults, dest: Path, data: bytes, **kw):  # type: ignore[no-untyped-def]
    with SignedLinkServer(root, faults=faults) as srv:
        report = download(
            [srv.url_for(NAME, kw.pop("ttl", None))],
            dest,
            catalog=catalog(data),
            retry=kw.pop("retry", FAST),
            part_size=kw.pop("part_size", 1 * MiB),
            connections=kw.pop("connections", 4),
            **kw,
        )
        return report, srv


def landed(dest: Path) -> bytes | None:
    path = dest / NAME
    return path.read_bytes() if path.exists() else None


def clean(dest: Path) -> bool:
    """No partial file, no temp file, nothing unverified under the final name."""
    return not status(dest).pending and not list(dest.rglob("*.tmp"))


@pytest.mark.parametrize(
    "faults",
    [
        Faults(reset_after=300_000, reset_count=3),
        Faults(status_first=[500, 503, 502]),
        Faults(wrong_range=2),
        Faults(content_encoding="gzip"),
    ],
    ids=["connection-resets", "server-errors", "wrong-content-range", "content-encoding"],
)
def test_transient_faults_are_retried_to_a_verified_file(
    payload, tmp_path: Path, faults: Faults
) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    retries: list[str] = []
    report, _ = fetch(
        root,
        faults,
        tmp_path / "d",
        data,
        progress=lambda e: retries.append(e.detail) if e.kind == "retry" else None,
    )
    assert report.exit_code == 0, report.summary()
    assert landed(tmp_path / "d") == data
    if faults.content_encoding is None:
        assert retries, "the faults must have been seen and retried"
    # a broken range is resumed from where it broke, not fetched again whole
    assert report.bytes_fetched < len(data) + 3 * 1 * MiB


def test_stall_is_detected_and_retried(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    began = time.monotonic()
    report, _ = fetch(root, Faults(stall_seconds=5, stall_count=1), tmp_path / "d", data)
    assert report.exit_code == 0
    assert landed(tmp_path / "d") == data
    assert time.monotonic() - began < 5  # the stalled connection was abandoned after ~1 s


def test_429_retry_after_is_honoured(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    began = time.monotonic()
    report, _ = fetch(root, Faults(status_first=[429], retry_after=1), tmp_path / "d", data)
    assert report.exit_code == 0
    assert time.monotonic() - began >= 1.0


def test_retries_are_bounded_and_reported(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    report, _ = fetch(root, Faults(status_first=[503] * 50), tmp_path / "d", data)
    assert report.exit_code == 1
    error = report.files[0].error
    assert isinstance(error, ServerError) and "failed 5 times" in str(error) and NAME in str(error)
    assert landed(tmp_path / "d") is None


def test_server_ignoring_range_falls_back_to_one_stream(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    report, srv = fetch(root, Faults(ignore_range=True), tmp_path / "d", data)
    # one plain GET (requests for the first parts sent with the probe go unused)
    assert [rng for _, rng in srv.requests].count(None) == 1, srv.requests
    assert report.exit_code == 0
    assert landed(tmp_path / "d") == data
    assert report.bytes_fetched == len(data)


def test_wrong_bytes_never_publish(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    report, _ = fetch(root, Faults(corrupt=True), tmp_path / "d", data)
    assert report.exit_code == 1
    assert isinstance(report.files[0].error, ChecksumMismatchError)
    assert landed(tmp_path / "d") is None
    assert clean(tmp_path / "d")


def test_html_page_instead_of_archive(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    report, _ = fetch(root, Faults(html=True), tmp_path / "d", data)
    assert report.exit_code == 1
    error = report.files[0].error
    assert isinstance(error, ContentError) and "HTML" in str(error)
    assert landed(tmp_path / "d") is None


def test_refusal_that_is_not_expiry_is_reported_as_such(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    with SignedLinkServer(root) as srv:
        url = srv.url_for(NAME).replace("Signature=", "Signature=tampered")
        report = download([url], tmp_path / "d", catalog=catalog(data), retry=FAST)
        missing = download([srv.url_for("nope.tar.gz")], tmp_path / "d", retry=FAST)
    assert report.exit_code == 1
    assert isinstance(report.files[0].error, LinkError)
    assert "not expired" in str(report.files[0].error)
    assert isinstance(missing.files[0].error, LinkError) and "404" in str(missing.files[0].error)


def test_dead_links_are_refused_at_once_while_good_ones_proceed(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    (root / "other.bin").write_bytes(b"x" * 1000)
    try:
        with SignedLinkServer(root) as srv:
            began = time.monotonic()
            report = download(
                [srv.url_for(NAME, ttl=-1), srv.url_for("other.bin")],
                tmp_path / "d",
                catalog=catalog(data),
                retry=FAST,
            )
            elapsed = time.monotonic() - began
    finally:
        (root / "other.bin").unlink()
    assert [f.status for f in report.files] == ["expired", "unverified"]
    assert isinstance(report.files[0].error, LinkExpiredError)
    assert report.exit_code == 3
    assert elapsed < 3


def test_link_expiring_mid_transfer_resumes_with_a_fresh_link(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    dest = tmp_path / "d"
    # 1 MiB/s per request: the file takes over 4 s, so requests are still being made
    # after the link's expiry (1.5-2 s from now, Expires being whole seconds)
    with SignedLinkServer(root, faults=Faults(rate=1 * MiB)) as srv:
        first = download(
            [srv.url_for(NAME, ttl=1.5)],
            dest,
            catalog=catalog(data),
            retry=FAST,
            part_size=1 * MiB,
            connections=2,
        )
        assert first.exit_code == 3
        assert isinstance(first.files[0].error, LinkExpiredError)
        assert landed(dest) is None
        done_before = first.files[0].bytes_fetched
        assert done_before > 0
        srv.faults.rate = None
        second = download(  # other settings: the upload keeps the part size it started with
            [srv.url_for(NAME)],
            dest,
            catalog=catalog(data),
            retry=FAST,
            part_size=2 * MiB,
            connections=4,
        )
    assert second.exit_code == 0
    assert landed(dest) == data
    assert second.files[0].bytes_resumed > 0
    assert second.files[0].bytes_fetched < len(data) - second.files[0].bytes_resumed + 2 * MiB


def test_file_changed_on_server_between_runs_restarts_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    old = b"\x1f\x8b" + os.urandom(6 * MiB)
    (root / NAME).write_bytes(old)
    dest = tmp_path / "d"
    # Halfway, the server stalls past the link's expiry: the retry finds it expired,
    # however many parts each request asked for.
    faults = Faults(rate=2 * MiB, stall_seconds=3.0, stall_at=3 * MiB + 1000)
    with SignedLinkServer(root, faults=faults) as srv:
        first = download(
            [srv.url_for(NAME, ttl=1.2)],
            dest,
            retry=FAST,
            part_size=1 * MiB,
            connections=2,
            catalog=Catalog({}),
        )
        assert first.exit_code == 3
        new = b"\x1f\x8b" + os.urandom(6 * MiB)
        time.sleep(0.01)
        (root / NAME).write_bytes(new)
        srv.faults.rate = None
        second = download(
            [srv.url_for(NAME)],
            dest,
            retry=FAST,
            part_size=1 * MiB,
            catalog=Catalog({}).with_overrides({NAME: {"sha1": hashlib.sha1(new).hexdigest()}}),
        )
    assert second.exit_code == 0, second.summary()
    assert landed(dest) == new


def test_destination_that_cannot_be_created(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DestinationError, match="cannot") as info:
        fetch(root, Faults(), blocker / "dest", data)
    assert str(blocker) in str(info.value)


def test_disk_full_is_found_before_downloading(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    root, data = payload
    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        report, _ = fetch(root, Faults(), mnt / "dest", data)
    finally:
        unmounted = subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0
    assert unmounted, "a file was left open on the full disk"
    assert report.exit_code == 1
    error = report.files[0].error
    assert isinstance(error, DestinationError) and "disk is full" in str(error)
    assert report.bytes_fetched == 0


def test_s3_bucket_missing_and_no_credentials(
    payload, tmp_path: Path, moto_endpoint: str, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    with pytest.raises(DestinationError, match="bucket does not exist") as info:
        fetch(
            root,
            Faults(),
            "s3://no-such-bucket/x",
            data,  # type: ignore[arg-type]
            endpoint_url=moto_endpoint,
        )
    assert "s3://no-such-bucket/x" in str(info.value)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(DestinationError, match="no AWS credentials"):
        fetch(
            root,
            Faults(),
            "s3://some-bucket/x",
            data,  # type: ignore[arg-type]
            endpoint_url=moto_endpoint,
        )


@pytest.mark.parametrize("value", ["soon", "-3", "nan", "1e999", "Thu, 99 Foo 2025 25:61:61 GMT"])
def test_malformed_retry_after_falls_back_to_backoff(payload, tmp_path: Path, value: str) -> None:  # type: ignore[no-untyped-def]
    root, data = payload
    events: list[Event] = []
    faults = Faults(status_first=[503, 429], retry_after=value)
    report, _ = fetch(root, faults, tmp_path / "d", data, progress=events.append)
    assert report.exit_code == 0, report.files[0].error
    assert landed(tmp_path / "d") == data
    assert len([e for e in events if e.kind == "retry"]) == 2


def test_retry_after_as_a_date_is_read_by_the_servers_clock(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A server an hour ahead says "retry at <its now + 2 s>": that is 2 s, not an hour."""
    root, data = payload
    when = formatdate(time.time() + 3600 + 2, usegmt=True)
    faults = Faults(status_first=[503], retry_after=when, clock_offset=3600)
    began = time.monotonic()
    report, _ = fetch(root, faults, tmp_path / "d", data)
    assert report.exit_code == 0, report.files[0].error
    assert 0.5 <= time.monotonic() - began < 60


def test_expiry_is_judged_by_the_servers_clock_when_ours_is_off(  # type: ignore[no-untyped-def]
    payload, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's clock is an hour ahead: a link it says is expired looks valid for an
    hour by ours.  Its refusal is expiry (exit 3, fresh links asked for), and the skew is
    reported once, as an event and a log line."""
    root, data = payload
    events: list[Event] = []
    with SignedLinkServer(root, faults=Faults(clock_offset=3600)) as srv:
        url = srv.url_for(NAME, expires=int(srv.now()) - 5)
        report = download(
            [url], tmp_path / "d", catalog=catalog(data), retry=FAST, progress=events.append
        )
    assert report.exit_code == 3
    assert isinstance(report.files[0].error, LinkExpiredError)
    notes = [e.detail for e in events if e.kind == "info"]
    assert len(notes) == 1 and "ahead of this machine's" in notes[0]
    assert f"127.0.0.1:{url.split(':')[2].split('/')[0]}" in notes[0]
    assert any("judged by the server's clock" in r.getMessage() for r in caplog.records)


def test_a_link_valid_by_the_servers_clock_is_downloaded(payload, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The server's clock is two hours behind: its fresh link looks long expired by ours,
    yet it is valid, downloads, and is said to be valid for its real time left."""
    root, data = payload
    events: list[Event] = []
    with SignedLinkServer(root, ttl=600, faults=Faults(clock_offset=-7200)) as srv:
        report = download(
            [srv.url_for(NAME)],
            tmp_path / "d",
            catalog=catalog(data),
            retry=FAST,
            progress=events.append,
        )
    assert report.exit_code == 0
    assert landed(tmp_path / "d") == data
    assert any(e.kind == "info" and "behind this machine's" in e.detail for e in events)
    probed = next(e for e in events if e.kind == "probed")
    assert 500 < int(probed.detail.split()[-1].rstrip("s")) <= 600
