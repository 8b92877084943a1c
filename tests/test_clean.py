"""``clean`` aborts only this tool's own unfinished uploads of this destination, names
them, and never touches another tool's uploads beside them (moto's S3 server)."""

from __future__ import annotations

import os
from pathlib import Path

from xview2_ingest import api
from xview2_ingest.stores import LocalStore
from xview2_ingest.stores.s3 import S3Store

MiB = 1 << 20
PART = 5 * MiB


def leave_unfinished(store, name: str) -> None:  # type: ignore[no-untyped-def]
    """An upload of ``name`` by this tool, one part done, left for a later run."""
    data = os.urandom(PART + 10)
    upload = store.open_upload(name, len(data), PART)
    upload.write_part(0, memoryview(data)[:PART])
    upload.checkpoint({"hashed": 0})
    upload.close()


def uploads(s3, bucket: str) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    listing = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return {(u["Key"], u["UploadId"]) for u in listing}


def start_foreign(s3, bucket: str) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Uploads another tool starts with boto3: under the same prefix (beside ours, nested,
    and one of the very key ours uses), and under a sibling prefix ``prefix2/``."""
    made = set()
    for key in ("prefix/other.bin", "prefix/sub/deep.bin", "prefix/mine.tar.gz", "prefix2/x.bin"):
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 100)
        made.add((key, upload_id))
    return made


def test_clean_aborts_only_its_own_uploads(  # type: ignore[no-untyped-def]
    s3, bucket: str, moto_endpoint: str, monkeypatch
) -> None:
    store = S3Store(f"s3://{bucket}/prefix", endpoint_url=moto_endpoint)
    leave_unfinished(store, "mine.tar.gz")
    leave_unfinished(store, "also-mine.tar.gz")
    ours = uploads(s3, bucket)
    foreign = start_foreign(s3, bucket)
    assert len(ours) == 2

    assert sorted(p.name for p in store.pending_uploads()) == ["also-mine.tar.gz", "mine.tar.gz"]
    listed = store.abort_pending(dry_run=True)
    assert sorted(p.name for p in listed) == ["also-mine.tar.gz", "mine.tar.gz"]
    assert [p.parts_done for p in listed] == [1, 1]
    assert uploads(s3, bucket) == ours | foreign  # a dry run aborts nothing

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    assert api.clean(f"s3://{bucket}/prefix", "mine.tar.gz").discarded == ["mine.tar.gz"]
    assert len(api.clean(f"s3://{bucket}/prefix").discarded) == 1
    assert uploads(s3, bucket) == foreign  # every foreign upload is still there
    assert store.pending_uploads() == []
    state = s3.list_objects_v2(Bucket=bucket, Prefix="prefix/.xview2/").get("Contents", [])
    assert state == []  # their resume state went with them
    for key, upload_id in foreign:  # and the foreign ones still work
        assert s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]


def test_state_on_this_machine_alone_still_marks_an_upload_ours(  # type: ignore[no-untyped-def]
    s3, bucket: str, moto_endpoint: str
) -> None:
    """The bucket's copy of the state can be missing (a run stopped between saves);
    the local copy names the upload, so clean still finds it."""
    store = S3Store(f"s3://{bucket}/prefix", endpoint_url=moto_endpoint)
    leave_unfinished(store, "f.tar.gz")
    s3.delete_object(Bucket=bucket, Key=store.state_key("f.tar.gz"))
    assert [p.name for p in store.abort_pending()] == ["f.tar.gz"]
    assert uploads(s3, bucket) == set()


def test_clean_at_the_bucket_root_leaves_other_prefixes(  # type: ignore[no-untyped-def]
    s3, bucket: str, moto_endpoint: str
) -> None:
    store = S3Store(f"s3://{bucket}", endpoint_url=moto_endpoint)
    leave_unfinished(store, "root.tar.gz")
    foreign = start_foreign(s3, bucket)
    assert [p.name for p in store.abort_pending()] == ["root.tar.gz"]
    assert uploads(s3, bucket) == foreign


def test_local_clean_names_partial_files_and_leaves_other_files(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    store = LocalStore(dest)
    leave_unfinished(store, "a.tar.gz")
    leave_unfinished(store, "b.tar.gz")
    (dest / "notes.part").write_text("the user's own file")
    (dest / ".xview2" / "other-tool.txt").write_text("not a partial file")
    assert api.clean(dest, dry_run=True).discarded == ["a.tar.gz", "b.tar.gz"]
    assert api.clean(dest, "b.tar.gz").discarded == ["b.tar.gz"]
    assert len(api.clean(dest).discarded) == 1
    assert store.pending_uploads() == []
    assert (dest / "notes.part").exists() and (dest / ".xview2" / "other-tool.txt").exists()
    assert list((dest / ".xview2" / "partial").iterdir()) == []


def test_starting_an_upload_leaves_another_tools_upload_of_that_key(  # type: ignore[no-untyped-def]
    s3, bucket: str, moto_endpoint: str
) -> None:
    foreign = start_foreign(s3, bucket)
    leave_unfinished(S3Store(f"s3://{bucket}/prefix", endpoint_url=moto_endpoint), "mine.tar.gz")
    assert foreign <= uploads(s3, bucket)
