"""``xview2 demo``: the whole job on a small synthetic dataset, served on 127.0.0.1.

Synthetic archives in the real layout are made in a temporary folder, served behind
expiring CloudFront-style signed links by :class:`.server.SignedLinkServer`, and ingested
(download, verify, extract, index) like real links, with a catalog of their true digests.

The synthetic archives carry the official file names, so the demo never touches real
data: it has its own folder (:data:`DEMO_DEST`, not ``XVIEW2_DEST``) and refuses a
destination that holds real archives (:func:`refuse_real_data`).  Where its files stay,
``status`` does not call them verified: their SHA-1 is not the built-in catalog's.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog
from ..errors import UsageError
from ..links import Link, parse_links_text
from ..manifest import Manifest
from ..stores import Store
from ..transfer.digest import Digest
from .server import SignedLinkServer
from .synth import make_dataset

DEMO_DEST = "./data/xview2-demo"
"""Where the demo writes unless told otherwise (never the real dataset's folder)."""


def refuse_real_data(store: Store) -> None:
    """Raise :class:`UsageError` when ``store`` holds an official archive: one recorded
    with the built-in catalog's SHA-1 (kept or removed after extraction), or present
    under an official name without a SHA-1 that tells it apart."""
    official = {e.name: e.sha1 for e in Catalog().official() if e.sha1}
    files = Manifest(store).files
    real = [n for n, e in files.items() if official.get(n) and e.get("sha1") == official[n]]
    real += [n for n, sha1 in official.items() if n not in files and store.size_of(n) is not None]
    if real:
        raise UsageError(
            f"{store.url} holds xView2 archives that may be real ({', '.join(sorted(real))}); "
            "the demo writes synthetic archives under the same names and never there",
            hint=f"run `xview2 demo` without --dest (it uses {DEMO_DEST}) or with "
            "--dest set to an empty folder",
        )


def _write_catalog(paths: list[Path], target: Path) -> None:
    entries = {}
    for path in paths:
        digest = Digest("sha1")
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        entries[path.name] = {"size": path.stat().st_size, "sha1": digest.hexdigest()}
    target.write_text(json.dumps(entries))


@dataclass
class ServedDemo:
    """A running demo: its links, the catalog of their true digests, where it is served."""

    links: list[Link]
    catalog: Path
    base_url: str
    archives: int


@contextmanager
def served_demo(pairs: int = 40, ttl: float = 300) -> Iterator[ServedDemo]:
    """Make synthetic archives of ``pairs`` image pairs per split and serve them behind
    links that live ``ttl`` seconds, until the block ends."""
    with tempfile.TemporaryDirectory(prefix="xview2-demo-") as tmp:
        root = Path(tmp) / "served"
        paths, _ = make_dataset(root, {"train": pairs, "test": max(1, pairs // 3)}, padding=40_000)
        catalog = Path(tmp) / "demo-catalog.json"
        _write_catalog(paths, catalog)
        with SignedLinkServer(root, ttl=ttl) as server:
            links = parse_links_text(server.links_text(), "<demo links>")
            yield ServedDemo(links, catalog, server.base_url, len(paths))
