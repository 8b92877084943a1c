"""Shared fixtures: real servers on 127.0.0.1 (signed-link HTTP server, moto S3 server)."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from xview2_ingest.catalog import Catalog
from xview2_ingest.demo.server import Faults, SignedLinkServer
from xview2_ingest.demo.synth import SynthStats, make_dataset

pytest_plugins = ["emulators"]  # fake-gcs-server and Azurite fixtures


@pytest.fixture(scope="session", autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Local copies of resume state go to a folder of the test run, not the user's."""
    path = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XVIEW2_STATE_DIR", str(path))
        yield path


@pytest.fixture()
def seed(request: pytest.FixtureRequest) -> int:
    """A seed for a randomised test: ``XVIEW2_TEST_SEED`` replays one; otherwise a fresh
    one, printed (pytest shows it with the failure) so that the run can be replayed."""
    raw = os.environ.get("XVIEW2_TEST_SEED")
    value = int(raw) if raw else random.SystemRandom().randrange(1 << 32)
    print(f"{request.node.nodeid}: XVIEW2_TEST_SEED={value}")
    return value


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server in server mode, reached over HTTP like any S3 endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_ENDPOINT_URL", raising=False)
        yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3(moto_endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture()
def bucket(s3, request) -> str:  # type: ignore[no-untyped-def]
    name = "b-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:20]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthStats]:
    """Small synthetic train and test archives in the real layout (a few MB each)."""
    root = tmp_path_factory.mktemp("archives")
    _, stats = make_dataset(root, {"train": 24, "test": 8}, padding=150_000)
    return root, stats


def true_catalog(root: Path) -> Catalog:
    """A catalog with the true size and digests of every file in ``root``."""
    entries: dict[str, object] = {}
    for p in sorted(root.iterdir()):
        data = p.read_bytes()
        entries[p.name] = {
            "size": len(data),
            "sha1": hashlib.sha1(data).hexdigest(),
            "md5": hashlib.md5(data).hexdigest(),
        }
    return Catalog().with_overrides(entries)


@pytest.fixture()
def catalog_for() -> Callable[[Path], Catalog]:
    """Makes a catalog with the true size and digests of every file in a folder."""
    return true_catalog


@pytest.fixture()
def server(dataset: tuple[Path, SynthStats]) -> Iterator[SignedLinkServer]:
    with SignedLinkServer(dataset[0], faults=Faults()) as srv:
        yield srv


def torchgeo_files(root: Path, split: str) -> list[dict[str, str]]:
    """What torchgeo's XView2 reads (datasets/xview.py: _verify, _load_files), checked
    without torchgeo: both split folders must hold images/ and targets/; pairs come from
    the image names; every pair needs two images and two targets."""
    for directory in ("train", "test"):
        for sub in ("images", "targets"):
            assert (root / directory / sub).is_dir(), (directory, sub)
    image_root, mask_root = root / split / "images", root / split / "targets"
    names = {"_".join(p.name.split("_")[:-2]) for p in image_root.glob("*.png")}
    files = []
    for name in sorted(names):
        pair = {
            "image1": str(image_root / f"{name}_pre_disaster.png"),
            "image2": str(image_root / f"{name}_post_disaster.png"),
            "mask1": str(mask_root / f"{name}_pre_disaster_target.png"),
            "mask2": str(mask_root / f"{name}_post_disaster_target.png"),
        }
        assert all(os.path.isfile(p) for p in pair.values()), pair
        files.append(pair)
    return files


@pytest.fixture()
def torchgeo_contract() -> Callable[[Path, str], list[dict[str, str]]]:
    """torchgeo's XView2 file contract: ``check(layout_root, split)`` asserts it and
    returns the pairs XView2 would load from that split."""
    return torchgeo_files
