"""The official xView2 files, their published digests, and user overrides.

Sizes of the official files are not published exactly; the built-in entries carry an
approximate size for planning and display only.  A ``--catalog`` file is exactly a JSON
object ``{"<file name>": {"size": <bytes>, "sha1": "<hex>", "md5": "<hex>"}}`` with every
field optional; its ``size`` is exact and checked.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import CatalogError

GB = 1000**3


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    size: int | None = None
    """Exact size in bytes, checked when known."""
    sha1: str | None = None
    md5: str | None = None
    approx_size: int | None = None
    """Size for display and planning when the exact one is not known."""
    label: str | None = None

    @property
    def verifiable(self) -> bool:
        return bool(self.sha1 or self.md5)

    def expected_digests(self) -> dict[str, str]:
        return {k: v for k, v in (("sha1", self.sha1), ("md5", self.md5)) if v}


_GEOTIFF_PARTS = {
    "aa": "881ed94d1060c91e64c8eae438dfce492a21d9a9",
    "ab": "4064dddc9aa05f786a3a6f70dd4ca86d79dd9e3a",
    "ac": "0cfdf761e6f77ac5c423d9fb0927c3f8f8ac43da",
    "ad": "44a39a7c4a80d386fb71ced95caee040126bb405",
    "ae": "7fb96fac1d009b6a213d4efef2fbf5f1a475a554",
    "af": "2ccbd04c4b2e27f8d948de734f661ec0c9d81152",
}

GEOTIFF_ARCHIVE = "xview2_geotiff.tgz"
GEOTIFF_PART_NAMES = tuple(f"{GEOTIFF_ARCHIVE}.part-{p}" for p in _GEOTIFF_PARTS)

BUILTIN: dict[str, CatalogEntry] = {
    e.name: e
    for e in [
        CatalogEntry(
            "train_images_labels_targets.tar.gz",
            sha1="b37a4ef4ee9c909e2b19d046e49d42ee3965714b",
            md5="a20ebbfb7eb3452785b63ad02ffd1e16",
            approx_size=int(7.8 * GB),
            label="Challenge training set",
        ),
        CatalogEntry(
            "test_images_labels_targets.tar.gz",
            sha1="86ed3dba2f8d16ceceb75d451005054fefa9616f",
            md5="1b39c47e05d1319c17cc8763cee6fe0c",
            approx_size=int(2.6 * GB),
            label="Challenge test set",
        ),
        CatalogEntry(
            "hold_images_labels_targets.tar.gz",
            sha1="fe7f162f0895bfaff134cab3abc23872f38d17da",
            approx_size=int(2.6 * GB),
            label="Challenge holdout set",
        ),
        CatalogEntry(
            "tier3.tar.gz",
            sha1="5bf6aaf8a71980b633fb4661776a99a200891de5",
            approx_size=17 * GB,
            label="Additional Tier3 training data",
        ),
        *(
            CatalogEntry(
                f"{GEOTIFF_ARCHIVE}.part-{p}",
                sha1=sha1,
                approx_size=int(8.5 * GB),
                label=f"Full data (GeoTIFFs), part {p}",
            )
            for p, sha1 in _GEOTIFF_PARTS.items()
        ),
        CatalogEntry(
            GEOTIFF_ARCHIVE,
            sha1="6eae3baddf86796c15638682a6432e3e6223cb39",
            approx_size=51 * GB,
            label="Full data (GeoTIFFs), assembled from its six parts",
        ),
        CatalogEntry(
            "xview_geotransforms.json.tgz",
            sha1="0b3bda08084ac102d8b540261ebbba0094203a2f",
            approx_size=500_000,
            label="Geotransforms",
        ),
    ]
}

_HEX = {"sha1": re.compile(r"^[0-9a-f]{40}$"), "md5": re.compile(r"^[0-9a-f]{32}$")}


class Catalog(Mapping[str, CatalogEntry]):
    """The built-in entries, optionally extended or overridden by user files."""

    def __init__(self, entries: Mapping[str, CatalogEntry] | None = None):
        self._entries = dict(BUILTIN if entries is None else entries)

    def __getitem__(self, name: str) -> CatalogEntry:
        return self._entries[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, name: str) -> CatalogEntry:
        """The entry for ``name``, or an empty (unverifiable) one."""
        return self._entries.get(name) or CatalogEntry(name)

    def official(self) -> list[CatalogEntry]:
        """The files of the download page (not the assembled GeoTIFF archive)."""
        return [e for e in self._entries.values() if e.name != GEOTIFF_ARCHIVE]

    def with_overrides(self, data: Mapping[str, object], origin: str = "<catalog>") -> Catalog:
        entries = dict(self._entries)
        for name, raw in data.items():
            if not isinstance(raw, dict):
                raise CatalogError(f"entry {name!r} must be an object", file=origin)
            unknown = set(raw) - {"size", "sha1", "md5"}
            if unknown:
                raise CatalogError(
                    f"entry {name!r} has unknown fields {sorted(unknown)}",
                    file=origin,
                    hint='allowed: "size", "sha1", "md5"',
                )
            base = entries.get(name) or CatalogEntry(name)
            changes: dict[str, object] = {}
            if "size" in raw:
                size = raw["size"]
                if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                    raise CatalogError(f"size of {name!r} must be a whole number", file=origin)
                changes["size"] = size
            for algo in ("sha1", "md5"):
                if algo in raw:
                    value = raw[algo]
                    if not isinstance(value, str) or not _HEX[algo].match(value.lower()):
                        raise CatalogError(f"{algo} of {name!r} is not a hex digest", file=origin)
                    changes[algo] = value.lower()
            entries[name] = replace(base, **changes)  # type: ignore[arg-type]
        return Catalog(entries)

    def with_file(self, path: str | os.PathLike[str]) -> Catalog:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CatalogError(f"cannot read catalog: {exc.strerror}", file=str(path)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CatalogError(
                f"not valid JSON: {exc}",
                file=str(path),
                hint='expected {"<file name>": {"size": 1, "sha1": "...", "md5": "..."}}',
            ) from None
        if not isinstance(data, dict):
            raise CatalogError("the catalog must be a JSON object", file=str(path))
        return self.with_overrides(data, str(path))


def load_catalog(*paths: str | os.PathLike[str]) -> Catalog:
    catalog = Catalog()
    for path in paths:
        catalog = catalog.with_file(path)
    return catalog
