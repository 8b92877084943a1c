"""Every links format, identification by file name, expiry, redaction."""

from __future__ import annotations

import json
import time

import pytest

from xview2_ingest.errors import LinksFileError
from xview2_ingest.links import link_deadline, parse_links_text, read_links, redact

SIGNED = (
    "https://download.xview2.org/train_images_labels_targets.tar.gz"
    "?Expires=1700000000&Signature=abc~def_&Key-Pair-Id=APKAEXAMPLE"
)
TEST = "https://download.xview2.org/test_images_labels_targets.tar.gz?Expires=1700000000&Signature=x&Key-Pair-Id=K"


def names(links):  # type: ignore[no-untyped-def]
    return [link.name for link in links]


def test_plain_lines_with_comments_and_blanks() -> None:
    text = f"# my links\n\n{SIGNED}\n   \n{TEST}  \n# end\n"
    links = parse_links_text(text)
    assert names(links) == [
        "train_images_labels_targets.tar.gz",
        "test_images_labels_targets.tar.gz",
    ]
    assert links[0].url == SIGNED


def test_name_equals_url_lines() -> None:
    links = parse_links_text(f"xview2_train={SIGNED}\nxview2_test = {TEST}\n")
    assert names(links) == [
        "train_images_labels_targets.tar.gz",
        "test_images_labels_targets.tar.gz",
    ]
    assert links[0].label == "xview2_train"


def test_json_object() -> None:
    links = parse_links_text(json.dumps({"train": SIGNED, "test": TEST}))
    assert names(links) == [
        "train_images_labels_targets.tar.gz",
        "test_images_labels_targets.tar.gz",
    ]


def test_python_module_is_parsed_not_executed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "executed"
    module = (
        "import os\n"
        f"os.system('touch {marker}')\n"
        f"challenge_links = {{\n    'xview2_train': '{SIGNED}',\n    \"xview2_test\": \"{TEST}\",\n}}\n"
    )
    path = tmp_path / "links.py"
    path.write_text(module)
    links = read_links(links_file=path)
    assert names(links) == [
        "train_images_labels_targets.tar.gz",
        "test_images_labels_targets.tar.gz",
    ]
    assert not marker.exists()


def test_stdin_and_arguments_merge() -> None:
    links = read_links([SIGNED], "-", stdin_text=TEST + "\n")
    assert len(links) == 2


def test_same_link_twice_is_deduplicated_but_conflict_is_an_error() -> None:
    assert len(parse_links_text(f"{SIGNED}\n{SIGNED}\n")) == 1
    other = SIGNED.replace("Signature=abc", "Signature=zzz")
    with pytest.raises(LinksFileError, match="given twice"):
        parse_links_text(f"{SIGNED}\n{other}\n", "links.txt")


@pytest.mark.parametrize(
    "text, message",
    [
        ("ftp://host/file.tar.gz\n", "not an http"),
        ("https://host/\n", "names no file"),
        ("this is not a link\n", "one URL or name=URL"),
        ("{not json", "not valid JSON"),
        ('{"a": 1}', "not a URL string"),
        ("   \n# only a comment\n", "no links found"),
    ],
)
def test_malformed_inputs_name_the_place(text: str, message: str) -> None:
    with pytest.raises(LinksFileError, match=message) as info:
        parse_links_text(text, "links.txt")
    assert "links.txt" in str(info.value)


def test_error_messages_never_show_the_signature() -> None:
    with pytest.raises(LinksFileError) as info:
        parse_links_text(f"{SIGNED}\n{SIGNED.replace('abc', 'zzz')}\n")
    assert "Signature" not in str(info.value) and "abc~def" not in str(info.value)


def test_missing_links_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LinksFileError, match="cannot read links file"):
        read_links(links_file=tmp_path / "nope.txt")


def test_redact_drops_query_and_credentials() -> None:
    assert redact(SIGNED) == "https://download.xview2.org/train_images_labels_targets.tar.gz"
    assert redact("https://u:p@h:8443/a/b.tgz?x=1#f") == "https://h:8443/a/b.tgz"
    link = parse_links_text(SIGNED)[0]
    assert "Signature" not in repr(link) and "Signature" not in str(link)


def test_deadlines_of_every_signing_scheme() -> None:
    assert link_deadline(SIGNED) == 1700000000
    s3 = "https://b.s3.amazonaws.com/k.tgz?X-Amz-Date=20240101T000000Z&X-Amz-Expires=600&X-Amz-Signature=s"
    assert link_deadline(s3) == 1704067200 + 600
    gcs = "https://storage.googleapis.com/b/k.tgz?X-Goog-Date=20240101T000000Z&X-Goog-Expires=60&X-Goog-Signature=s"
    assert link_deadline(gcs) == 1704067200 + 60
    azure = "https://a.blob.core.windows.net/c/k.tgz?sv=2022&se=2024-01-01T00:10:00Z&sig=s"
    assert link_deadline(azure) == 1704067200 + 600
    assert link_deadline("https://h/k.tgz") is None
    link = parse_links_text(SIGNED)[0]
    assert link.seconds_left(now=1700000000 - 90) == 90
    assert (
        parse_links_text(f"https://h/k.tgz?Expires={int(time.time()) + 60}")[0].seconds_left() > 0
    )


def test_a_link_given_as_the_links_file_keeps_its_secret(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xview2_ingest.cli import main

    with pytest.raises(LinksFileError) as info:
        read_links(links_file=SIGNED)
    assert "abc~def" not in str(info.value) and "Signature" not in str(info.value)
    assert "pass links as arguments" in str(info.value)
    code = main(["download", "--links", SIGNED, "--dest", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2
    assert "abc~def" not in err and "Signature" not in err and "Key-Pair-Id" not in err
    assert "train_images_labels_targets.tar.gz" in err


@pytest.mark.parametrize(
    "text",
    [
        "download.xview2.org/x.tar.gz?Signature=abc~def",  # no scheme
        "ftp://u:pw@host/x.tar.gz?Signature=abc~def",
        "https://[::1/x.tar.gz?Signature=abc~def",
        "https://host:99999/x.tar.gz?Signature=abc~def",
    ],
)
def test_refused_urls_never_show_their_query_or_password(text: str) -> None:
    with pytest.raises(LinksFileError) as info:
        read_links([text])
    assert "abc~def" not in str(info.value) and "Signature" not in str(info.value)
    assert "pw" not in str(info.value)


def test_redact_survives_malformed_urls() -> None:
    assert redact("https://u:p@[::1/x.tgz?Signature=s#f") == "https://[::1/x.tgz"
    assert redact("https://h:99999/x.tgz?Signature=s") == "https://h:99999/x.tgz"
    assert redact("https://[::1]:8443/x.tgz?s=1") == "https://[::1]:8443/x.tgz"


def test_a_links_file_given_as_an_argument_gets_a_hint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "links.txt"
    path.write_text(SIGNED + "\n")
    with pytest.raises(LinksFileError, match="--links"):
        read_links([str(path)])
