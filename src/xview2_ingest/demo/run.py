"""``xview2 demo``: the whole job on a small synthetic dataset, served on 127.0.0.1.

Synthetic archives in the real layout are made in a temporary folder, served behind
expiring CloudFront-style signed links by :class:`.server.SignedLinkServer`, and ingested
(download, verify, extract, index) like real links, with a catalog of their true digests.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..links import Link, parse_links_text
from ..transfer.digest import Digest
from .server import SignedLinkServer
from .synth import make_dataset


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
