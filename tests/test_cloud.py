"""GCS and Azure destinations end to end, on fake-gcs-server and Azurite (tests/emulators.py):
download, extract, index through the Python API; compose in rounds; GeoTIFF assembly;
server-side copies; ``clean`` touching only the tool's own leftovers."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from xview2_ingest import download, extract, status
from xview2_ingest.api import clean
from xview2_ingest.catalog import GEOTIFF_ARCHIVE, GEOTIFF_PART_NAMES, Catalog
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.demo.synth import SynthStats
from xview2_ingest.errors import UsageError
from xview2_ingest.index import build_index
from xview2_ingest.manifest import Manifest
from xview2_ingest.stores import Composer, Copier, RangeReader, Store, open_store

MiB = 1 << 20


@pytest.fixture(params=["gcs", "azure"])
def cloud(request: pytest.FixtureRequest) -> str:
    """``gs://bucket/xview2`` on fake-gcs-server or ``az://container/xview2`` on Azurite."""
    if request.param == "gcs":
        return f"gs://{request.getfixturevalue('gcs_bucket')}/xview2"
    return f"az://{request.getfixturevalue('azure_container')}/xview2"


def catalog_of(root: Path) -> Catalog:
    return Catalog().with_overrides(
        {
            p.name: {"size": p.stat().st_size, "sha1": hashlib.sha1(p.read_bytes()).hexdigest()}
            for p in root.iterdir()
        }
    )


def publish(store: Store, name: str, data: bytes, part: int = MiB) -> None:
    upload = store.open_upload(name, len(data), part)
    for i in range(0, len(data), part):
        upload.write_part(i // part, memoryview(data)[i : i + part])
    upload.publish()


def test_download_extract_index_end_to_end(
    cloud: str, server: SignedLinkServer, dataset: tuple[Path, SynthStats]
) -> None:
    root, stats = dataset
    catalog = catalog_of(root)
    report = download(server.links_text().split(), cloud, catalog=catalog, part_size=MiB)
    assert report.ok, report.summary()
    store = open_store(cloud)
    for result in report.files:
        data = (root / result.name).read_bytes()
        assert result.status == "verified"
        assert result.digests["sha1"] == hashlib.sha1(data).hexdigest()
        with store.open_read(result.name) as fh:
            assert hashlib.sha1(fh.read()).hexdigest() == result.digests["sha1"]
    assert status(cloud, catalog=catalog).pending == []
    assert not [n for n, _ in store.list_files() if "/.xview2/" in f"/{n}"]

    extracted = extract(None, cloud, catalog=catalog)
    assert extracted.ok, extracted.summary()
    assert all(a.members_written == a.members_total > 0 for a in extracted.archives)
    with tarfile.open(root / "test_images_labels_targets.tar.gz") as tar:
        member = next(m for m in tar if m.isfile() and m.name.endswith(".json"))
        expected = tar.extractfile(member).read()  # type: ignore[union-attr]
    assert store.read_bytes(member.name) == expected

    index = build_index(cloud, workers=1)
    assert index.ok and index.pairs == sum(stats.pairs.values())
    assert store.size_of("index/images.parquet")


def test_gcs_publish_composes_in_rounds(gcs_bucket: str) -> None:
    """70 parts: three composes of <= 32 into intermediates, then the final one; nothing
    of the upload is left afterwards."""
    from google.cloud import storage

    store = open_store(f"gs://{gcs_bucket}/r")
    data = os.urandom(70 * store.min_part_size - 5)
    publish(store, "big.bin", data, store.min_part_size)
    assert store.read_bytes("big.bin") == data
    left = [b.name for b in storage.Client(project="t").list_blobs(gcs_bucket, prefix="r/.xview2/")]
    assert left == []
    assert isinstance(store, Composer)
    sources = tuple(f"s{i:02d}" for i in range(40))  # more sources than one compose takes
    for i, name in enumerate(sources):
        store.write_bytes(name, bytes([i]) * (i + 1))
    size = store.compose("joined.bin", sources)
    assert store.read_bytes("joined.bin") == b"".join(bytes([i]) * (i + 1) for i in range(40))
    assert size == sum(range(1, 41))
    # the fewest, smallest intermediates that bring a round down to 32 sources
    plan = store._plan_round  # type: ignore[attr-defined]
    runs, out = plan([(str(i), i) for i in range(64)])
    assert [len(r) for _, r in runs] == [32, 2] and len(out) == 32
    runs, out = plan([(str(i), i) for i in range(1024)])
    assert [len(r) for _, r in runs] == [32] * 32 and len(out) == 32


def test_gcs_part_objects_fit_one_compose_call(gcs_bucket: str) -> None:
    """The engine plans its parts as for any store (a buffer for every connection), in
    multiples of 256 KiB (resumable chunks); a file of more than 32 parts goes up as at
    most 32 part objects of consecutive parts, so publishing is one compose call."""
    from xview2_ingest.stores import GroupedParts
    from xview2_ingest.transfer.engine import TransferOptions, plan_part_size

    store = open_store(f"gs://{gcs_bucket}/p")
    gib = 1 << 30
    assert plan_part_size(gib, store, TransferOptions(connections=16)) == 8 * MiB
    odd = plan_part_size(gib, store, TransferOptions(part_size=4 * MiB + 64 * 1024))
    assert odd == 4 * MiB + 256 * 1024  # rounded up to a whole chunk
    for size, part, group in ((gib, 8 * MiB, 4), (20 * MiB, MiB, 1), (10 << 30, 10 * MiB, 32)):
        upload = store.open_upload("plan.bin", size, part)
        assert isinstance(upload, GroupedParts) and upload.group_parts == group
        assert -(-size // (part * group)) <= 32
        upload.abort()


def test_gcs_resume_state_mid_group_is_not_taken_up(gcs_bucket: str) -> None:
    """A saved state whose hashed parts end inside a group (never written so by the
    engine) would have the next run send a group from its middle: it is set aside, and
    the finished part objects are still known; a state at a group's end is taken up."""
    store = open_store(f"gs://{gcs_bucket}/m")
    part = store.min_part_size
    data = os.urandom(34 * part)
    view = memoryview(data)
    for hashed, kept in ((3, False), (4, True)):
        upload = store.open_upload(f"mid{hashed}.bin", len(data), part)
        assert upload.group_parts == 2  # type: ignore[attr-defined]
        for i in range(4):
            upload.write_part(i, view[i * part : (i + 1) * part])
        upload.checkpoint({"hashed": hashed})
        upload.close()
        again = store.open_upload(f"mid{hashed}.bin", len(data), part)
        assert again.done_parts() == {0, 1, 2, 3}
        assert (again.load_state() is not None) is kept
        again.abort()


def test_a_lease_held_elsewhere_blocks_until_it_expires(cloud: str) -> None:
    """The writer's lease of a run on another machine refuses a second run with the S3
    message until its expiry; an expired one is taken over, and released at the end."""
    import json
    import time

    from xview2_ingest.errors import DestinationError
    from xview2_ingest.stores import Exclusive

    store = open_store(cloud)
    assert isinstance(store, Exclusive)
    lock = ".xview2/lock.json"
    record = {"token": "t", "host": "elsewhere", "pid": 7, "since": int(time.time())}
    store.write_bytes(lock, json.dumps({**record, "expires": time.time() + 60}).encode())
    refused = r"another xview2 run \(pid 7 on elsewhere"
    with pytest.raises(DestinationError, match=refused), store.exclusive():
        pass
    store.write_bytes(lock, json.dumps({**record, "expires": time.time() - 1}).encode())
    with store.exclusive():
        held = json.loads(store.read_bytes(lock) or b"{}")
        assert held["pid"] == os.getpid() and held["token"] != "t"
    assert store.read_bytes(lock) is None


def test_a_lease_in_a_missing_bucket_says_what_to_create(cloud: str) -> None:
    from xview2_ingest.errors import DestinationError
    from xview2_ingest.stores import Exclusive

    missing = cloud.replace("://", "://no-such-", 1)
    store = open_store(missing)
    assert isinstance(store, Exclusive)
    with pytest.raises(DestinationError, match="does not exist") as info, store.exclusive():
        pass
    assert "create" in (info.value.hint or "")


def test_a_held_lease_is_renewed(cloud: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder rewrites its lease on its own version before it expires."""
    import json
    import time

    from xview2_ingest.stores import Exclusive, objlease

    monkeypatch.setattr(objlease, "RENEW_EVERY", 0.2)
    store = open_store(cloud)
    assert isinstance(store, Exclusive)
    with store.exclusive() as lease:
        first = lease._version  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while lease._version == first and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert lease._version != first  # type: ignore[attr-defined]
        assert json.loads(store.read_bytes(".xview2/lock.json") or b"{}")["pid"] == os.getpid()
    assert store.read_bytes(".xview2/lock.json") is None


def test_publish_refuses_a_missing_part(cloud: str) -> None:
    store = open_store(cloud)
    part = store.min_part_size
    upload = store.open_upload("gap.bin", 3 * part, part)
    upload.write_part(0, memoryview(bytes(part)))
    upload.write_part(2, memoryview(bytes(part)))
    with pytest.raises(Exception, match="part 2 of 3"):
        upload.publish()
    assert store.size_of("gap.bin") is None
    upload.abort()


def test_geotiff_parts_extract_and_assemble(cloud: str) -> None:
    """The six parts are read as one verified stream and assembled by the store
    (GCS compose; Azure blocks copied from URL, or staged through here on Azurite,
    which lacks Put Block From URL)."""
    buf = io.BytesIO()
    rng = __import__("random").Random(11)
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for i in range(6):
            payload = rng.randbytes(300_000 + i)
            info = tarfile.TarInfo(f"geotiffs/tier1/images/x_{i:08d}_pre_disaster.tif")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    whole = buf.getvalue()
    cut = len(whole) // 6
    store = open_store(cloud)
    for i, name in enumerate(GEOTIFF_PART_NAMES):
        publish(store, name, whole[i * cut : (i + 1) * cut if i < 5 else None])
    manifest = Manifest(store)
    for name in GEOTIFF_PART_NAMES:
        manifest.record(name, size=store.size_of(name) or 0, digests={}, verified=True, source="t")
    catalog = Catalog().with_overrides({GEOTIFF_ARCHIVE: {"sha1": hashlib.sha1(whole).hexdigest()}})
    report = extract(None, cloud, catalog=catalog, assemble_geotiff=True, remove_archives=True)
    assert report.ok, report.summary()
    assert report.archives[0].assembled
    assert store.read_bytes(GEOTIFF_ARCHIVE) == whole
    assert all(store.size_of(n) is None for n in GEOTIFF_PART_NAMES)


def test_copy_and_ranged_reads(cloud: str) -> None:
    store = open_store(cloud)
    assert isinstance(store, Copier) and isinstance(store, RangeReader)
    data = os.urandom(3 * MiB + 17)
    publish(store, "a.bin", data)
    store.write_bytes("b.bin", b"old")
    store.copy("a.bin", "b.bin")
    assert store.read_bytes("b.bin") == data
    with store.open_read_at("b.bin", 2 * MiB + 5) as fh:
        assert fh.read() == data[2 * MiB + 5 :]


def test_clean_discards_only_the_tools_own_leftovers(cloud: str) -> None:
    store = open_store(cloud)
    part = store.min_part_size
    store.write_bytes("keep/published.bin", b"mine")
    for name in ("dir/one.bin", "two.bin"):
        upload = store.open_upload(name, 2 * part, part)
        upload.write_part(0, memoryview(os.urandom(part)))
        upload.checkpoint({"hashed": 1})
        upload.close()
    pending = status(cloud).pending
    assert sorted((p.name, p.parts_done) for p in pending) == [("dir/one.bin", 1), ("two.bin", 1)]
    assert clean(cloud, "two.bin").discarded == ["two.bin"]
    assert [p.name for p in status(cloud).pending] == ["dir/one.bin"]
    assert len(clean(cloud).discarded) == 1
    assert status(cloud).pending == []
    assert dict(store.list_files()) == {"keep/published.bin": 4}


def test_spellings_and_missing_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    from xview2_ingest.stores import azure, gcs

    assert azure.parse_azure_url("az://c/p/q") == (None, "c", "p/q")
    assert azure.parse_azure_url("abfss://c@acct.dfs.core.windows.net/p") == ("acct", "c", "p")
    assert azure.parse_azure_url("https://acct.blob.core.windows.net/c/p/") == ("acct", "c", "p")
    assert gcs.parse_gcs_url("gs://b/x/y/") == ("b", "x/y")
    monkeypatch.setattr(gcs, "HAVE_SDK", False)
    with pytest.raises(UsageError, match=r"xview2-ingest\[gcs\]"):
        open_store("gs://b/p")
    monkeypatch.setattr(azure, "HAVE_SDK", False)
    with pytest.raises(UsageError, match=r"xview2-ingest\[azure\]"):
        open_store("az://c/p")


class _FlakyProxy:
    """An HTTP proxy on 127.0.0.1 in front of an emulator that answers every ``every``-th
    write (PUT/POST) with one of ``codes`` in turn, as a busy service does, instead of
    forwarding it."""

    def __init__(self, target: str, codes: tuple[int, int], every: int = 3):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlsplit

        self.refused = 0
        self.writes = 0
        lock = threading.Lock()
        host, port = urlsplit(target).hostname, urlsplit(target).port
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command in ("PUT", "POST"):
                    with lock:
                        proxy.writes += 1
                        refuse = proxy.writes % every == 0
                        proxy.refused += refuse
                    if refuse:
                        code = codes[proxy.refused % 2]
                        self.send_response(code)
                        self.send_header("Content-Length", "0")
                        self.send_header("Retry-After", "0")
                        self.end_headers()
                        return
                conn = http.client.HTTPConnection(host, port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                dropped = ("transfer-encoding", "connection")
                if self.command != "HEAD":  # a HEAD's length is the object's
                    dropped += ("content-length",)
                for k, v in reply.getheaders():
                    if k.lower() not in dropped:
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_rate_limit_answers_are_retried(
    cloud: str, monkeypatch: pytest.MonkeyPatch, gcs_endpoint: str, azurite: str
) -> None:
    """Every third write is refused as a busy service refuses it (GCS: 429 or 503; Azure
    Storage: 503 ServerBusy or 500, it sends no 429): the upload still lands, whole."""
    if cloud.startswith("gs://"):
        proxy = _FlakyProxy(gcs_endpoint, (429, 503))
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    else:
        target = azurite.split("BlobEndpoint=")[1].split("/devstoreaccount1")[0]
        proxy = _FlakyProxy(target, (503, 500))
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.replace(target, proxy.url))
    try:
        store = open_store(cloud)
        data = os.urandom(5 * MiB + 3)
        publish(store, "busy.bin", data)
        assert proxy.refused >= 2
        assert store.read_bytes("busy.bin") == data
    finally:
        proxy.close()


def test_an_empty_file_publishes(cloud: str) -> None:
    store = open_store(cloud)
    upload = store.open_upload("empty.bin", 0, store.min_part_size)
    assert upload.done_parts() == set()
    upload.publish()
    assert store.size_of("empty.bin") == 0 and store.pending_uploads() == []
