"""Reading xView2 label files: where they are, what their names mean, what they hold.

A label is ``{disaster}_{id:08d}_{pre|post}_disaster.json``; its image has the same stem
(``.png`` in the challenge archives, ``.tif`` in the GeoTIFF archive) and, in the challenge
archives, its target mask is ``{stem}_target.png``.  ``{disaster}_{id:08d}`` is the key
that pairs a pre-disaster image with its post-disaster image (torchgeo pairs files by it).

Layouts understood, relative to the destination (or inside the archives):

* challenge: ``{train,test,hold,tier3}/{images,labels,targets}/``
* GeoTIFF:   ``geotiffs/{tier1,tier3,test,hold}/{images,labels}/``
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter, methodcaller
from typing import Any, NamedTuple

try:  # orjson parses label files about twice as fast as the standard library
    from orjson import JSONDecodeError as _JSONError
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - exercised only without orjson
    _loads = json.loads  # type: ignore[assignment]
    _JSONError = json.JSONDecodeError  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

SPLITS = ("train", "test", "hold", "tier3")
"""Splits of the challenge archives, in index order."""
GEOTIFF_TIERS = ("tier1", "tier3", "test", "hold")
"""Folders of the GeoTIFF archive under ``geotiffs/``."""
ARCHIVES = {
    "train": ("train_images_labels_targets.tar.gz", "train_images_labels_targets.tar"),
    "test": ("test_images_labels_targets.tar.gz", "test_images_labels_targets.tar"),
    "hold": ("hold_images_labels_targets.tar.gz", "hold_images_labels_targets.tar"),
    "tier3": ("tier3.tar.gz", "tier3.tar"),
    "geotiffs": ("xview2_geotiff.tgz",),
}
"""Archives an index can be read from without extracting: what they hold -> their file
names, official first (some people save them as ``.tar``; the content is gzip either
way, and it is detected, not assumed)."""

DAMAGE_CLASSES = ("no-damage", "minor-damage", "major-damage", "destroyed", "un-classified")
"""Post-disaster ``subtype`` values, in order of severity (un-classified last)."""
COUNT_COLUMNS = {c: "n_" + c.replace("-", "_") for c in DAMAGE_CLASSES}
"""Damage class -> building count column of ``images.parquet``."""

FLOAT_FIELDS = (
    "gsd",
    "off_nadir_angle",
    "pan_resolution",
    "sun_azimuth",
    "sun_elevation",
    "target_azimuth",
)
INT_FIELDS = ("original_width", "original_height", "width", "height")
METADATA_FIELDS = (
    "sensor",
    "provider_asset_type",
    "gsd",
    "capture_date",
    "off_nadir_angle",
    "pan_resolution",
    "sun_azimuth",
    "sun_elevation",
    "target_azimuth",
    "catalog_id",
    "original_width",
    "original_height",
    "width",
    "height",
    "id",
    "img_name",
)
"""Metadata keys stored as columns (``disaster``/``disaster_type`` have their own)."""
_STRING_FIELDS = tuple(
    k
    for k in ("disaster", "disaster_type", *METADATA_FIELDS)
    if k not in FLOAT_FIELDS and k not in INT_FIELDS and k != "capture_date"
)

_NAME = re.compile(
    r"^(?:(?P<geo>geotiffs)/)?(?P<split>[A-Za-z0-9_-]+)/labels/"
    r"(?P<stem>(?P<key>(?P<disaster>[^/]+?)_(?P<number>\d+))_(?P<phase>pre|post)_disaster)\.json$"
)


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1  # integer metadata is stored as int32
_PROPERTIES, _UID, _WKT = itemgetter("properties"), itemgetter("uid"), itemgetter("wkt")
_SUBTYPE = methodcaller("get", "subtype")


class LabelError(ValueError):
    """A label file that cannot be indexed; the message says why."""


class LabelRef(NamedTuple):
    """What a label's path says about it."""

    path: str
    layout: str  # "challenge" or "geotiff"
    split: str
    disaster: str
    image_id: str  # {disaster}_{id:08d}
    phase: str  # "pre" or "post"
    image_path: str
    target_path: str | None


def is_label_path(name: str) -> bool:
    """A ``.json`` under a ``labels/`` folder, not an AppleDouble ``._`` companion."""
    base = name.rsplit("/", 1)[-1]
    return name.endswith(".json") and "/labels/" in f"/{name}" and not base.startswith("._")


def parse_label_path(path: str) -> LabelRef:
    """Split a label path into split, disaster, pairing key, phase and sibling paths."""
    m = _NAME.match(path)
    if m is None:
        raise LabelError(
            "file name does not follow <split>/labels/{disaster}_{id}_{pre|post}_disaster.json"
        )
    split, stem = m["split"], m["stem"]
    if m["geo"]:
        base = f"geotiffs/{split}"
        return LabelRef(
            path,
            "geotiff",
            split,
            m["disaster"],
            m["key"],
            m["phase"],
            f"{base}/images/{stem}.tif",
            None,
        )
    return LabelRef(
        path,
        "challenge",
        split,
        m["disaster"],
        m["key"],
        m["phase"],
        f"{split}/images/{stem}.png",
        f"{split}/targets/{stem}_target.png",
    )


@dataclass(slots=True)
class LabelFile:
    """One parsed label: its metadata row and its buildings (paired lng_lat/xy)."""

    ref: LabelRef
    meta: dict[str, Any]
    uids: list[str]
    subtypes: list[str | None]
    pixel_wkt: list[Any]
    geo_wkt: list[Any]
    size: int


def _number(meta: dict[str, Any], key: str, kind: type) -> float | int | None:
    value = meta.get(key)
    if value is None:
        return None
    what = "a whole number" if kind is int else "a number"
    if isinstance(value, bool):
        raise LabelError(f"metadata.{key} is not {what}: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise LabelError(f"metadata.{key} is not {what}: {str(value)[:40]!r}") from None
    if kind is not int:
        return number
    if not number.is_integer():
        raise LabelError(f"metadata.{key} is not {what}: {str(value)[:40]!r}")
    if not _INT_MIN <= number <= _INT_MAX:
        raise LabelError(f"metadata.{key} is out of range: {str(value)[:40]!r}")
    return int(number)


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise LabelError(f"metadata.capture_date is not a date: {str(value)[:40]!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise LabelError(f"metadata.capture_date is not an ISO 8601 date: {value[:40]!r}") from None
    if moment.tzinfo is UTC:  # "...Z", the usual form
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise LabelError(f"metadata.{key} is not a string: {str(value)[:40]!r}")


_ALL_FIELDS = ("disaster", "disaster_type", *METADATA_FIELDS)
_USUAL_TYPES = [
    float if k in FLOAT_FIELDS else int if k in INT_FIELDS else str for k in _ALL_FIELDS
]


def read_metadata(meta: Any, ref: LabelRef) -> dict[str, Any]:
    """The typed metadata row (floats, ints, a UTC timestamp, strings; absent -> None)."""
    if not isinstance(meta, dict):
        raise LabelError("'metadata' is not an object")
    values = list(map(meta.get, _ALL_FIELDS))
    row: dict[str, Any] = dict(zip(_ALL_FIELDS, values, strict=True))
    usual = list(map(type, values)) == _USUAL_TYPES
    if usual:
        ints = list(map(row.__getitem__, INT_FIELDS))
        usual = min(ints) >= _INT_MIN and max(ints) <= _INT_MAX
    if not usual:  # something absent or of another type: check and convert field by field
        for key in _STRING_FIELDS:
            value = row[key]
            row[key] = value if value is None or type(value) is str else _text(meta, key)
        for key in FLOAT_FIELDS:
            value = row[key]
            row[key] = value if value is None or type(value) is float else _number(meta, key, float)
        for key in INT_FIELDS:
            row[key] = _number(meta, key, int)
    row["capture_date"] = _timestamp(row["capture_date"])
    row["disaster"] = row["disaster"] or ref.disaster
    return row


def _explain_structure(doc: Any) -> None:
    """Raise the LabelError that says what is wrong with the document's layout."""
    if not isinstance(doc, dict):
        raise LabelError("not a JSON object")
    for key in ("features", "metadata"):
        if key not in doc:
            raise LabelError(f"missing key {key!r}")
    features = doc["features"]
    if not isinstance(features, dict):
        raise LabelError("'features' is not an object")
    for key in ("xy", "lng_lat"):
        if key not in features:
            raise LabelError(f"missing key 'features.{key}'")
        if not isinstance(features[key], list):
            raise LabelError(f"'features.{key}' is not a list")
    raise LabelError("unexpected document structure")


def read_label(ref: LabelRef, data: bytes) -> LabelFile:
    """Parse and check one label file; raise :class:`LabelError` saying what is wrong."""
    try:
        doc = _loads(data)
    except (_JSONError, ValueError, UnicodeDecodeError) as exc:
        raise LabelError(f"not valid JSON: {str(exc).splitlines()[0][:120]}") from None
    try:
        features, metadata = doc["features"], doc["metadata"]
        xy, lng_lat = features["xy"], features["lng_lat"]
        if type(xy) is not list or type(lng_lat) is not list:
            raise TypeError
    except (KeyError, TypeError):
        _explain_structure(doc)
        raise
    try:  # map/itemgetter: the C-level equivalent of the obvious comprehensions
        props = list(map(_PROPERTIES, xy))
        uids = list(map(_UID, props))
        subtypes = list(map(_SUBTYPE, props))
        pixel_wkt = list(map(_WKT, xy))
        geo_uids = list(map(_UID, map(_PROPERTIES, lng_lat)))
        geo_wkt = list(map(_WKT, lng_lat))
    except KeyError as exc:
        raise LabelError(f"a feature has no {exc.args[0]!r}") from None
    except (TypeError, AttributeError):
        raise LabelError("a feature is not an object with 'properties' and 'wkt'") from None
    if geo_uids != uids:
        try:
            geo_wkt = _pair(uids, geo_uids, geo_wkt)
        except TypeError:
            raise LabelError("a feature uid is not a string") from None
    meta = read_metadata(metadata, ref)
    return LabelFile(ref, meta, uids, subtypes, pixel_wkt, geo_wkt, len(data))


def check_feature_types(f: LabelFile) -> None:
    """Uids are strings, subtypes strings or absent (checked per file only when a batch
    of files fails the same check as a whole)."""
    if not all(type(u) is str for u in f.uids):
        raise LabelError("a feature uid is not a string")
    if not all(s is None or type(s) is str for s in f.subtypes):
        raise LabelError("a feature subtype is not a string")


def _pair(uids: list[str], geo_uids: list[str], geo_wkt: list[Any]) -> list[Any]:
    """Reorder the lng_lat polygons to the order of the xy ones, by uid."""
    by_uid = dict(zip(geo_uids, geo_wkt, strict=True))
    if len(by_uid) != len(geo_uids) or len(set(uids)) != len(uids):
        raise LabelError("duplicate feature uid")
    if by_uid.keys() != set(uids):
        missing = sorted(set(uids) ^ by_uid.keys())
        raise LabelError(
            f"lng_lat and xy features do not pair by uid ({len(missing)} unmatched, "
            f"e.g. {missing[0]})"
        )
    return [by_uid[u] for u in uids]
