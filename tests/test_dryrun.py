"""``--dry-run``: every link probed, the plan reported, no body byte served, nothing
written; the exit code is the run's for expired or refused links."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
import pytest

from xview2_ingest import download, import_archives, plan_download
from xview2_ingest.catalog import Catalog
from xview2_ingest.cli.app import main
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.errors import ExitCode, LinkExpiredError

MiB = 1 << 20
TRAIN = "train_images_labels_targets.tar.gz"
TEST = "test_images_labels_targets.tar.gz"


@pytest.fixture(params=["local", "s3"])
def dest(request, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    if request.param == "local":
        return str(tmp_path / "dest")
    monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("moto_endpoint"))
    return f"s3://{request.getfixturevalue('bucket')}/xview2"


def written(dest: str) -> list[str]:
    """Every file or object at the destination, and every unfinished upload."""
    if dest.startswith("s3://"):
        bucket = dest[5:].partition("/")[0]
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(keys + [u["Key"] + " (upload)" for u in uploads])
    root = Path(dest)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_the_plan_fetches_nothing(catalog_for, server, dataset, dest: str) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    catalog = catalog_for(root)
    assert download([server.url_for(TEST)], dest, catalog=catalog).ok
    before, served = written(dest), server.bytes_served
    links = server.links_text().split()
    plan = plan_download(links, dest, catalog=catalog)
    assert server.bytes_served - served <= 2 * len(links)  # the probes' two bytes each
    assert written(dest) == before
    actions = {f.name: f for f in plan.files}
    assert actions[TEST].action == "skip" and actions[TEST].bytes_to_fetch == 0
    train = actions[TRAIN]
    size = (root / TRAIN).stat().st_size
    assert (train.action, train.size, train.ranges, train.catalog) == ("fetch", size, True, "sha1")
    assert train.bytes_to_fetch == size and 0 < (train.seconds_left or 0) <= 600
    assert plan.space_needed == size and plan.exit_code == 0
    assert (plan.space_free is None) == dest.startswith("s3://")
    data = plan.to_dict()
    assert data["dry_run"] is True and data["bytes_to_fetch"] == size
    assert json.dumps(data)  # plain data


def test_a_seeded_transfer_is_planned_as_a_resume(tmp_path: Path, dest: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = b"\x1f\x8b" + os.urandom(24 * MiB)
    (src / "big.tgz").write_bytes(data)
    catalog = Catalog().with_overrides({"big.tgz": {"size": len(data)}})
    (tmp_path / "big.tgz.part").write_bytes(data[: 20 * MiB])
    seeded = import_archives([tmp_path / "big.tgz.part"], dest, catalog=catalog).files[0]
    with SignedLinkServer(src) as server:
        plan = plan_download([server.url_for("big.tgz")], dest, catalog=catalog)
        assert server.bytes_served <= 2
    planned = plan.files[0]
    assert planned.action == "resume" and planned.catalog == "size"
    assert planned.bytes_resumable == seeded.bytes_placed
    assert planned.bytes_to_fetch == len(data) - seeded.bytes_placed


def test_expired_and_refused_links_exit_as_the_run_would(server, dest: str, capsys) -> None:  # type: ignore[no-untyped-def]
    expired = plan_download([server.url_for(TRAIN, ttl=-30)], dest)
    assert expired.exit_code == ExitCode.EXPIRED
    assert isinstance(expired.files[0].error, LinkExpiredError)
    missing = server.url_for("nothing.tar.gz")
    assert plan_download([missing], dest).exit_code == ExitCode.FAILURE
    assert server.bytes_served == 0
    code = main(["download", server.url_for(TRAIN, ttl=-30), "--dest", dest, "--dry-run"])
    assert code == ExitCode.EXPIRED
    err = capsys.readouterr().err
    assert "expired" in err and TRAIN in err and "Signature=" not in err
    assert written(dest) == []


def test_the_command_line_plan(catalog_for, server, dataset, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    root, _ = dataset
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({n: {"size": (root / n).stat().st_size} for n in (TEST, TRAIN)}))
    dest = tmp_path / "dest"
    args = [*server.links_text().split(), "--dest", str(dest), "--catalog", str(catalog)]
    assert main(["download", *args, "--dry-run"]) == 0
    assert main(["ingest", *args, "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("dry run, 2 link(s): 2 fetch") == 2
    assert server.bytes_served <= 8 and not dest.exists()
