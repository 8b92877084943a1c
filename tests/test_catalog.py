"""The built-in catalog and --catalog overrides."""

from __future__ import annotations

import json

import pytest

from xview2_ingest.catalog import BUILTIN, GEOTIFF_PART_NAMES, Catalog, load_catalog
from xview2_ingest.errors import CatalogError


def test_builtin_holds_the_published_files() -> None:
    train = BUILTIN["train_images_labels_targets.tar.gz"]
    assert train.sha1 == "b37a4ef4ee9c909e2b19d046e49d42ee3965714b"
    assert train.md5 == "a20ebbfb7eb3452785b63ad02ffd1e16"
    assert train.size is None and train.approx_size
    assert BUILTIN["hold_images_labels_targets.tar.gz"].md5 is None
    assert len(GEOTIFF_PART_NAMES) == 6
    assert all(BUILTIN[n].sha1 for n in GEOTIFF_PART_NAMES)
    assert "xview2_geotiff.tgz" not in {e.name for e in Catalog().official()}


def test_user_catalog_adds_and_overrides(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cat.json"
    path.write_text(
        json.dumps(
            {
                "extra.bin": {"size": 10},
                "tier3.tar.gz": {"size": 123, "md5": "A" * 32},
            }
        )
    )
    cat = load_catalog(path)
    assert cat["extra.bin"].size == 10 and not cat["extra.bin"].verifiable
    tier3 = cat["tier3.tar.gz"]
    assert tier3.size == 123 and tier3.md5 == "a" * 32
    assert tier3.sha1 == BUILTIN["tier3.tar.gz"].sha1  # fields not given are kept
    assert cat.lookup("unknown.bin").verifiable is False


@pytest.mark.parametrize(
    "content, message",
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"a": 3}', "must be an object"),
        ('{"a": {"sha256": "00"}}', "unknown fields"),
        ('{"a": {"size": "big"}}', "whole number"),
        ('{"a": {"sha1": "xyz"}}', "not a hex digest"),
    ],
)
def test_bad_catalogs_are_clear_errors(tmp_path, content: str, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cat.json"
    path.write_text(content)
    with pytest.raises(CatalogError, match=message) as info:
        load_catalog(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2
