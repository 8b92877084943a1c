"""File names from links are checked before any request, and every store re-checks that a
name stays under its root: hostile names never reach a server, a disk or a bucket."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from xview2_ingest.cli import main
from xview2_ingest.demo.server import SignedLinkServer
from xview2_ingest.errors import DestinationError, LinksFileError
from xview2_ingest.links import MAX_NAME_BYTES, Link, read_links
from xview2_ingest.stores import LocalStore
from xview2_ingest.stores.s3 import S3Store

SIGNATURE = "Expires=9999999999&Signature=sekrit~sig&Key-Pair-Id=K"

HOSTILE = {
    "slash": "a%2Fb.tar.gz",
    "dotdot": "%2E%2E",
    "dot": "%2E",
    "climb": "..%2F..%2Fvictim.tar.gz",
    "backslash": "a%5Cb.tar.gz",
    "manifest": "manifest.json",
    "manifest-case": "MANIFEST.Json",
    "index": "index",
    "work-dir": ".xview2",
    "state-file": ".xview2%2Fstate%2Fx.tar.gz.json",
    "hidden": ".hidden.tar.gz",
    "nul": "a%00b.tar.gz",
    "newline": "a%0Ab.tar.gz",
    "escape": "a%1B%5B31mb.tar.gz",
    "delete": "a%7Fb.tar.gz",
    "c1-control": "a%C2%85b.tar.gz",
    "long-ascii": "a" * (MAX_NAME_BYTES + 1),
    "long-utf8": "%C3%A9" * 128,  # 128 characters, 256 bytes
    "not-utf8": "%FF%FE.tar.gz",
}


@pytest.fixture(params=["local", "s3"])
def dest(request, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return str(tmp_path / "dest")
    request.getfixturevalue("moto_endpoint")
    return f"s3://{request.getfixturevalue('bucket')}/pre"


def untouched(dest: str, moto_endpoint: str | None) -> bool:
    """Nothing at all was written: no folder, no object, no multipart upload."""
    if not dest.startswith("s3://"):
        return not Path(dest).exists()
    bucket = dest[5:].partition("/")[0]
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return not objects and not uploads


@pytest.fixture()
def endpoint(request, dest: str) -> str | None:  # type: ignore[no-untyped-def]
    """The S3 endpoint when ``dest`` is a bucket."""
    return request.getfixturevalue("moto_endpoint") if dest.startswith("s3://") else None  # type: ignore[no-any-return]


def run(dest: str, endpoint: str | None, *args: str) -> int:
    extra = ["--endpoint-url", endpoint] if endpoint else []
    return main(["download", *args, "--dest", dest, "--no-prompt", *extra])


@pytest.mark.parametrize("path", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_names_are_refused_before_any_request(  # type: ignore[no-untyped-def]
    server: SignedLinkServer, dest: str, endpoint: str | None, capsys, path: str
) -> None:
    url = f"{server.base_url}/{path}?{SIGNATURE}"
    assert run(dest, endpoint, url) == 2
    err = capsys.readouterr().err
    assert "argument 1" in err and "Traceback" not in err
    assert "sekrit" not in err and "Signature" not in err
    assert server.hits == 0
    assert untouched(dest, endpoint)


def test_the_refusal_names_the_line_of_the_links_file(  # type: ignore[no-untyped-def]
    server: SignedLinkServer, dest: str, endpoint: str | None, capsys, tmp_path: Path
) -> None:
    links = tmp_path / "links.txt"
    links.write_text(
        f"# fresh links\n{server.url_for('train.tar.gz')}\n\n"
        f"{server.base_url}/..%2Fmanifest.json?{SIGNATURE}\n"
    )
    assert run(dest, endpoint, "--links", str(links)) == 2
    err = capsys.readouterr().err
    assert f"{links}:4" in err and "path separator" in err
    assert server.hits == 0
    assert untouched(dest, endpoint)


@pytest.mark.parametrize(
    "second",
    ["file.tar.gz?Expires=1&Signature=other", "FILE.tar.gz", "file%2Etar.gz?x=1"],
    ids=["same-name", "case-only", "percent-encoded"],
)
def test_two_links_for_one_name_are_refused(  # type: ignore[no-untyped-def]
    server: SignedLinkServer, dest: str, endpoint: str | None, capsys, second: str
) -> None:
    first = f"{server.base_url}/file.tar.gz?{SIGNATURE}"
    assert run(dest, endpoint, first, f"{server.base_url}/{second}") == 2
    err = capsys.readouterr().err
    assert "given twice" in err and "argument 1 and argument 2" in err
    assert server.hits == 0
    assert untouched(dest, endpoint)


def test_json_and_python_links_files_name_the_line(tmp_path: Path) -> None:
    bad = f"https://h/a%2Fb.tar.gz?{SIGNATURE}"
    json_file = tmp_path / "links.json"
    json_file.write_text(f'{{\n  "good": "https://h/ok.tar.gz",\n  "bad": "{bad}"\n}}\n')
    with pytest.raises(LinksFileError, match=r"links\.json:3 \[bad\]"):
        read_links(links_file=json_file)
    py_file = tmp_path / "links.py"
    py_file.write_text(f"links = {{\n    'good': 'https://h/ok.tgz',\n    'bad': '{bad}',\n}}\n")
    with pytest.raises(LinksFileError, match=r"links\.py:3 \[bad\]"):
        read_links(links_file=py_file)


def test_names_at_the_limits_are_accepted() -> None:
    longest = "a" * (MAX_NAME_BYTES - 7) + ".tar.gz"
    assert [link.name for link in read_links([f"https://h/{longest}"])] == [longest]
    assert read_links(["https://h/x/caf%C3%A9.tgz"])[0].name == "café.tgz"
    assert read_links(["https://h/manifest.json.tgz"])[0].name == "manifest.json.tgz"
    assert len(read_links(["https://h/a.tgz?x=1", "https://h/a.tgz?x=1"])) == 1


def test_links_made_in_code_are_checked_too() -> None:
    with pytest.raises(LinksFileError, match="path separator"):
        Link(name="../x.tgz", url="https://h/x.tgz", origin="mine")


# -- every store re-checks -----------------------------------------------------------------

ESCAPES = ["", "..", "../x", "a/../../x", "../../victim/x", "/abs", "a//b", "./a", "a/.", "a\x00b"]


@pytest.mark.parametrize("name", ESCAPES, ids=repr)
def test_s3_key_of_refuses_escapes(moto_endpoint: str, name: str) -> None:
    store = S3Store("s3://bucket/prefix", endpoint_url=moto_endpoint)
    with pytest.raises(DestinationError, match="refusing the object name"):
        store.key_of(name)


def test_s3_key_of_keeps_good_names_and_checks_the_prefix(moto_endpoint: str) -> None:
    store = S3Store("s3://bucket/prefix", endpoint_url=moto_endpoint)
    assert store.key_of("a/b.bin") == "prefix/a/b.bin"
    assert store.state_key("f.tgz") == "prefix/.xview2/state/f.tgz.json"
    with pytest.raises(DestinationError, match="longer than"):
        store.key_of("x" * 1100)
    climbing = S3Store("s3://bucket/prefix/../../victim", endpoint_url=moto_endpoint)
    with pytest.raises(DestinationError):
        climbing.key_of("f.tgz")


@pytest.mark.parametrize("name", [*ESCAPES[:5], "/etc/passwd", "a\x00b"], ids=repr)
def test_local_path_of_refuses_escapes(tmp_path: Path, name: str) -> None:
    store = LocalStore(tmp_path / "dest")
    with pytest.raises(DestinationError, match="refusing the name"):
        store.path_of(name)


def test_local_path_of_refuses_a_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "dest").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "dest" / "link").symlink_to(tmp_path / "outside")
    store = LocalStore(tmp_path / "dest")
    with pytest.raises(DestinationError):
        store.path_of("link/x.tgz")
    assert store.path_of("sub/x.tgz") == (tmp_path / "dest" / "sub" / "x.tgz").resolve()
