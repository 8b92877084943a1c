"""Resume state is untrusted input: random and hostile records in every place a store
keeps them (a local journal, an S3 state object, its local copy) never crash a run and
never publish a wrong file.  Each case ends verified, or refused by the checksum with
nothing published (a forged but consistent digest state) and verified on the rerun.

``XVIEW2_FUZZ_SEED`` replays a run (its seed is printed); ``XVIEW2_FUZZ_CASES`` sets how
many cases each place gets.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import random
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from xview2_ingest import download
from xview2_ingest.catalog import Catalog
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.errors import ChecksumMismatchError
from xview2_ingest.links import read_links
from xview2_ingest.stores import LocalStore, Store
from xview2_ingest.stores.s3 import S3Store
from xview2_ingest.transfer.digest import Digest
from xview2_ingest.transfer.http import HttpClient, RetryPolicy

SEED = int(os.environ.get("XVIEW2_FUZZ_SEED", time.time()))
CASES = int(os.environ.get("XVIEW2_FUZZ_CASES", 12))
NAME = "fuzz.bin"
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)

HOSTILE: list[Any] = [
    None, True, False, -1, 0, 1, 2**31, 2**64, 1.5, float("inf"), "", "x" * 5000,
    "\u0000\ud7ff", [], {}, [[0, 10**12]], [[5, 2]], [[0, 1]] * 2000, {"0": 10**9},
    {"99999999": 1}, [0] * 1000, {"a": {"b": {"c": []}}},
]  # fmt: skip


def forged_digest(rng: random.Random, nbytes: int) -> str:
    """A consistent SHA-1 context (counters right) over bytes that were never hashed."""
    raw = bytearray(rng.randbytes(128))
    bits = nbytes * 8
    raw[20:28] = struct.pack("<II", bits & 0xFFFFFFFF, bits >> 32)
    raw[92:96] = struct.pack("<I", nbytes % 64)
    return base64.b64encode(bytes(raw)).decode()


def bad_digest(rng: random.Random, nbytes: int) -> str:
    return rng.choice(
        [
            base64.b64encode(rng.randbytes(rng.choice([0, 1, 96, 127, 129, 4096]))).decode(),
            base64.b64encode(rng.randbytes(128)).decode(),  # counters that disagree
            "not base64 at all!",
            "QUJD" * 2000,
            forged_digest(rng, nbytes),
            forged_digest(rng, nbytes + 64),
        ]
    )


def paths_of(record: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(record, dict):
        for key, value in record.items():
            out += paths_of(value, (*prefix, key))
    return out


def mutate(rng: random.Random, record: dict[str, Any], nbytes: int, forge: bool = False) -> bytes:
    """A hostile version of ``record``, as the bytes of the file; with ``forge``, one that
    passes every check but holds a digest state of bytes never hashed."""
    if forge:
        out = copy.deepcopy(record)
        out["engine"]["digests"]["sha1"] = forged_digest(rng, nbytes)
        return json.dumps(out).encode()
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(2000))
    if kind == 1:
        return b"[" * 100_000 + b"]" * 100_000
    if kind == 2:
        return json.dumps({"pad": "x" * (2 << 20)}).encode()
    if kind == 3:
        return json.dumps(rng.choice([[], 3, "s", None, [record]])).encode()
    out = copy.deepcopy(record)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths_of(out))
        parent = out
        for key in path[:-1]:
            parent = parent[key]
        if not isinstance(parent, dict):
            continue
        if kind == 4 and path[-1] in parent:
            del parent[path[-1]]
        elif path[-1] in ("sha1", "digests") or kind == 5:
            parent[path[-1]] = (
                bad_digest(rng, nbytes) if path[-1] == "sha1" else rng.choice(HOSTILE)
            )
        else:
            parent[path[-1]] = rng.choice(HOSTILE)
    return json.dumps(out).encode()


def seeded(rng: random.Random, store: Store, url: str, data: bytes, part: int, done: int) -> None:
    """A valid unfinished upload: ``done`` parts persisted and hashed."""
    remote = HttpClient().probe(read_links([url])[0])
    digest = Digest("sha1")
    upload = store.open_upload(NAME, len(data), part)
    for i in range(done):
        piece = memoryview(data)[i * part : (i + 1) * part]
        upload.write_part(i, piece)
        digest.update(piece)
    upload.checkpoint(
        {"identity": remote.identity(), "hashed": done, "digests": {"sha1": digest.state()}}
    )
    upload.close()


def run_case(
    store: Store, dest: str, srv: SignedLinkServer, data: bytes, part: int, **kw: Any
) -> str:
    catalog = Catalog({}).with_overrides({NAME: {"sha1": hashlib.sha1(data).hexdigest()}})
    report = download([srv.url_for(NAME)], dest, catalog=catalog, part_size=part, retry=FAST, **kw)
    result = report.files[0]
    if result.status == "verified":
        assert store.read_bytes(NAME) == data
        return "verified"
    assert isinstance(result.error, ChecksumMismatchError), result.error
    assert store.read_bytes(NAME) is None
    again = download([srv.url_for(NAME)], dest, catalog=catalog, part_size=part, retry=FAST, **kw)
    assert again.files[0].status == "verified", again.files[0].error
    assert store.read_bytes(NAME) == data
    return "refused, then verified"


def fuzz(
    tmp_path: Path,
    size: int,
    part: int,
    new_store: Callable[[int], tuple[Store, str]],
    spoil: Callable[[Store, random.Random, bool], None],
    **kw: Any,
) -> None:
    print(f"seed={SEED}")
    rng = random.Random(SEED)
    data = rng.randbytes(size)
    root = tmp_path / "src"
    root.mkdir()
    (root / NAME).write_bytes(data)
    outcomes: dict[str, int] = {}
    with SignedLinkServer(root) as srv:
        for case in range(CASES):
            store, dest = new_store(case)
            seeded(rng, store, srv.url_for(NAME), data, part, 2 if case == 0 else rng.randint(0, 2))
            spoil(store, rng, case == 0)  # the first case forges a consistent state
            try:
                outcome = run_case(store, dest, srv, data, part, **kw)
            except BaseException:
                print(f"case {case} failed (seed {SEED})")
                raise
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(outcomes)


def test_fuzzed_local_journal(tmp_path: Path) -> None:
    part = LocalStore.min_part_size

    def new_store(case: int) -> tuple[Store, str]:
        dest = tmp_path / f"d{case}"
        return LocalStore(dest), str(dest)

    def spoil(store: Store, rng: random.Random, forge: bool) -> None:
        assert isinstance(store, LocalStore)
        partial = store.work / "partial"
        fast, durable = partial / f"{NAME}.state.json", partial / f"{NAME}.durable.json"
        record = json.loads(fast.read_text())
        hashed = record["engine"]["hashed"]
        spoiled = mutate(rng, record, hashed * part, forge)
        for path in [fast, durable] if forge else rng.choice([[fast], [durable], [fast, durable]]):
            path.write_bytes(spoiled)

    fuzz(tmp_path, 4 * part + 777, part, new_store, spoil)


@pytest.mark.parametrize("where", ["bucket", "local-copy"])
def test_fuzzed_s3_state(tmp_path: Path, moto_endpoint: str, bucket: str, where: str) -> None:
    part = S3Store.min_part_size
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)

    def new_store(case: int) -> tuple[Store, str]:
        url = f"s3://{bucket}/{where}{case}"
        return S3Store(url, endpoint_url=moto_endpoint), url

    def spoil(store: Store, rng: random.Random, forge: bool) -> None:
        assert isinstance(store, S3Store)
        key = store.state_key(NAME)
        record = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        copy_path = store.local_copy(store.key_of(NAME)).path
        local = json.loads(copy_path.read_text())
        hashed = (local["engine"] or {}).get("hashed", 0)
        if where == "bucket":
            copy_path.unlink()
            s3.put_object(Bucket=bucket, Key=key, Body=mutate(rng, record, hashed * part, forge))
        else:  # the bucket's copy is older: the local one would be taken up
            record["engine"] = None
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(record).encode())
            local["spool"] = {"0": part, "1": 17}
            copy_path.write_bytes(mutate(rng, local, hashed * part, forge))

    fuzz(tmp_path, 2 * part + 4321, part, new_store, spoil, endpoint_url=moto_endpoint)


def test_a_digest_state_is_checked_before_it_is_restored() -> None:
    """Longer than a context (it was once copied into a 128-byte buffer whole), not
    base64, counters that disagree, or another byte count: refused, never restored."""
    good = Digest("sha1")
    good.update(b"x" * 1000)
    state = good.state()
    assert state is not None
    Digest("sha1", state)  # a real state restores
    raw = base64.b64decode(state)
    for bad in [
        base64.b64encode(raw + b"\0" * 4096).decode(),
        base64.b64encode(raw[:96]).decode(),
        state[:-4] + "!!!!",
        base64.b64encode(raw[:92] + struct.pack("<I", 4000) + raw[96:]).decode(),
    ]:
        with pytest.raises(ValueError):
            Digest("sha1", bad)
    from xview2_ingest.transfer.digest import check_state

    with pytest.raises(ValueError, match="covers 1,000 bytes, not 999"):
        check_state("sha1", state, 999)
