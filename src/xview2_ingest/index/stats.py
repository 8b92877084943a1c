"""Dataset statistics from the index: pairs, buildings per damage class, class shares.

Computed from ``index/images.parquet`` alone (its per-image building counts), a small
file, so they cost no read of the labels or the building rows, whatever the dataset size.
Damage classes count the buildings of the post-disaster labels; ``buildings_pre`` counts
the footprints of the pre-disaster ones.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ExitCode, XView2Error
from ..events import ProgressCallback
from ..settings import dest_setting
from ..stores import Store, open_store
from .build import IMAGES_FILE, build_index
from .labels import COUNT_COLUMNS, DAMAGE_CLASSES, SPLITS

if TYPE_CHECKING:
    from rich.console import Group

log = logging.getLogger(__name__)

ALL = "all"
COLORS = {
    "no-damage": "#4daf4a",
    "minor-damage": "#ffd92f",
    "major-damage": "#ff7f00",
    "destroyed": "#e41a1c",
    "un-classified": "#999999",
}


class IndexMissingError(XView2Error):
    """``compute_stats`` found no index at the destination."""


@dataclass
class GroupStats:
    """Counts for one split and disaster (either may be ``"all"``)."""

    split: str
    disaster: str
    images: int = 0
    pairs: int = 0
    buildings_pre: int = 0
    damage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DAMAGE_CLASSES, 0))

    @property
    def buildings_post(self) -> int:
        return sum(self.damage.values())

    @property
    def shares(self) -> dict[str, float]:
        """Share of each damage class among the post-disaster buildings (0 when none)."""
        total = self.buildings_post
        return {c: (n / total if total else 0.0) for c, n in self.damage.items()}

    def add(self, other: GroupStats) -> None:
        self.images += other.images
        self.pairs += other.pairs
        self.buildings_pre += other.buildings_pre
        for c, n in other.damage.items():
            self.damage[c] += n

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "pairs": self.pairs,
            "buildings_pre": self.buildings_pre,
            "buildings_post": self.buildings_post,
            "damage": dict(self.damage),
            "shares": {c: round(s, 6) for c, s in self.shares.items()},
        }


@dataclass
class DatasetStats:
    """Statistics of an indexed dataset; see :func:`compute_stats`."""

    dest: str
    layout: str
    groups: list[GroupStats]
    """One entry per (split, disaster) present, in split then disaster order."""
    bands: dict[str, list[dict[str, Any]]] | None = None
    """Per split, per band mean/std of the images (``compute_stats(bands=True)``)."""

    @property
    def ok(self) -> bool:
        return True

    @property
    def exit_code(self) -> int:
        return ExitCode.OK

    def summary(self) -> str:
        total = self.total()
        return (
            f"{total.pairs:,} pairs, {total.buildings_post:,} post-disaster buildings in "
            f"{len(self.splits)} split(s) and {len(self.disasters)} disaster(s) at {self.dest}"
        )

    # ------------------------------------------------------------------ aggregates
    @property
    def splits(self) -> list[str]:
        return list(dict.fromkeys(g.split for g in self.groups))

    @property
    def disasters(self) -> list[str]:
        return sorted({g.disaster for g in self.groups})

    def by_split(self) -> list[GroupStats]:
        """One entry per split, over all its disasters."""
        return [self._sum(split=s) for s in self.splits]

    def by_disaster(self) -> list[GroupStats]:
        """One entry per disaster, over all splits."""
        return [self._sum(disaster=d) for d in self.disasters]

    def total(self) -> GroupStats:
        return self._sum()

    def _sum(self, split: str = ALL, disaster: str = ALL) -> GroupStats:
        out = GroupStats(split, disaster)
        for g in self.groups:
            if split in (ALL, g.split) and disaster in (ALL, g.disaster):
                out.add(g)
        return out

    @property
    def pairs(self) -> dict[str, int]:
        """Pre/post image pairs per split."""
        return {g.split: g.pairs for g in self.by_split()}

    @property
    def pairs_by_disaster(self) -> dict[tuple[str, str], int]:
        return {(g.split, g.disaster): g.pairs for g in self.groups}

    @property
    def damage_by_split(self) -> dict[str, dict[str, int]]:
        """Post-disaster buildings per damage class, per split."""
        return {g.split: dict(g.damage) for g in self.by_split()}

    @property
    def damage_by_disaster(self) -> dict[str, dict[str, int]]:
        return {g.disaster: dict(g.damage) for g in self.by_disaster()}

    # ------------------------------------------------------------------ outputs
    def _rows(self) -> list[GroupStats]:
        return [*self.groups, *self.by_split(), *self.by_disaster(), self.total()]

    def to_csv(self) -> str:
        """One row per (split, disaster), then per split, per disaster and the total
        (``all`` standing for every split or disaster)."""
        keys = [c.replace("-", "_") for c in DAMAGE_CLASSES]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "split",
                "disaster",
                "images",
                "pairs",
                "buildings_pre",
                "buildings_post",
                *keys,
                *(f"share_{k}" for k in keys),
            ]
        )
        for g in self._rows():
            writer.writerow(
                [
                    g.split,
                    g.disaster,
                    g.images,
                    g.pairs,
                    g.buildings_pre,
                    g.buildings_post,
                    *g.damage.values(),
                    *(f"{s:.6f}" for s in g.shares.values()),
                ]
            )
        return out.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "layout": self.layout,
            "damage_classes": list(DAMAGE_CLASSES),
            "total": self.total().to_dict(),
            "splits": {
                g.split: g.to_dict()
                | {
                    "disasters": {
                        d.disaster: d.to_dict() for d in self.groups if d.split == g.split
                    }
                }
                for g in self.by_split()
            },
            "disasters": {g.disaster: g.to_dict() for g in self.by_disaster()},
        } | ({"bands": self.bands} if self.bands is not None else {})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_rich(self) -> Group:
        """Two tables (per split, per disaster) for ``rich.print``."""
        from rich.console import Group
        from rich.table import Table

        def table(title: str, first: str, rows: list[tuple[str, GroupStats]]) -> Table:
            t = Table(title=title, title_justify="left", header_style="bold")
            t.add_column(first)
            for name in ("pairs", "images", "pre bldgs"):
                t.add_column(name, justify="right")
            for c in DAMAGE_CLASSES:
                t.add_column(c, justify="right", style=None)
            t.add_column("post bldgs", justify="right")
            for i, (label, g) in enumerate(rows):
                if i == len(rows) - 1:
                    t.add_section()
                shares = g.shares
                t.add_row(
                    label,
                    f"{g.pairs:,}",
                    f"{g.images:,}",
                    f"{g.buildings_pre:,}",
                    *(f"{g.damage[c]:,} ({shares[c]:.1%})" for c in DAMAGE_CLASSES),
                    f"{g.buildings_post:,}",
                )
            return t

        total = self.total()
        extra = [self._bands_table()] if self.bands else []
        return Group(
            *extra,
            table(
                "xView2 by split (damage = post-disaster buildings, share)",
                "split",
                [(g.split, g) for g in self.by_split()] + [("total", total)],
            ),
            table(
                "by disaster",
                "disaster",
                [(g.disaster, g) for g in self.by_disaster()] + [("total", total)],
            ),
        )

    def _bands_table(self) -> Any:
        from rich.table import Table

        t = Table(title="image bands (mean ± std)", title_justify="left", header_style="bold")
        t.add_column("split")
        names = list(
            dict.fromkeys(b["band"] for bands in (self.bands or {}).values() for b in bands)
        )
        for name in names:
            t.add_column(name, justify="right")
        for split, bands in (self.bands or {}).items():
            by_name = {b["band"]: b for b in bands}
            t.add_row(
                split,
                *(
                    f"{by_name[n]['mean']:.2f} ± {by_name[n]['std']:.2f}" if n in by_name else ""
                    for n in names
                ),
            )
        return t

    def to_png(self) -> bytes:
        """A bar chart of damage classes, stacked, per split and per disaster (PNG)."""
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import StrMethodFormatter
        except ImportError:
            raise XView2Error(
                "drawing the chart needs matplotlib, which is not installed",
                hint="pip install 'xview2-ingest[plot]'",
            ) from None
        splits, disasters = self.by_split(), self.by_disaster()
        fig = Figure(figsize=(13, 6.5), dpi=100, layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=[1, 2.2])
        for ax, groups, labels, horizontal in (
            (left, splits, [g.split for g in splits], False),
            (right, disasters, [g.disaster for g in disasters], True),
        ):
            base = [0.0] * len(groups)
            for c in DAMAGE_CLASSES:
                values = [g.damage[c] for g in groups]
                if horizontal:
                    ax.barh(labels, values, left=base, color=COLORS[c], label=c)
                else:
                    ax.bar(labels, values, bottom=base, color=COLORS[c], label=c)
                base = [b + v for b, v in zip(base, values, strict=True)]
            axis = ax.xaxis if horizontal else ax.yaxis
            axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
            axis.set_label_text("post-disaster buildings")
            if horizontal:
                ax.invert_yaxis()
            ax.grid(axis="x" if horizontal else "y", alpha=0.3)
            ax.set_axisbelow(True)
        left.set_title("by split")
        right.set_title("by disaster")
        fig.legend(
            *left.get_legend_handles_labels(),
            loc="outside lower center",
            ncols=len(DAMAGE_CLASSES),
            frameon=False,
        )
        fig.suptitle(f"xView2 building damage classes ({self.total().pairs:,} image pairs)")
        out = io.BytesIO()
        fig.savefig(out, format="png")
        return out.getvalue()

    def write_png(self, path: str | os.PathLike[str], *, store: Store | None = None) -> str:
        """Write :meth:`to_png` to a local ``path``, or under that name in ``store``
        (e.g. ``"index/stats.png"`` next to the index); return where it went."""
        data = self.to_png()
        if store is not None:
            name = os.fspath(path)
            store.write_bytes(name, data)
            return f"{store.url.rstrip('/')}/{name}"
        target = Path(path)
        if target.parent != Path():
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return str(target)


def compute_stats(
    dest: str | os.PathLike[str] | None = None,
    *,
    endpoint_url: str | None = None,
    build_if_missing: bool = False,
    progress: ProgressCallback | None = None,
    bands: bool = False,
) -> DatasetStats:
    """Statistics of the dataset at ``dest``, read from ``DEST/index/images.parquet``.

    Without an index this raises :class:`IndexMissingError`, unless ``build_if_missing``
    is set, in which case :func:`build_index` runs first (from the extracted tree).
    Counting is kept explicit on purpose: indexing reads every label file, and an old
    index is never rebuilt behind the caller's back.

    When the destination holds both the challenge tree and the GeoTIFF tree, the
    statistics describe the challenge tree (``layout``), so nothing is counted twice.

    ``bands`` adds the per-split, per-band mean/std of the images
    (:func:`xview2_ingest.prepare.band_stats`: reused from ``index/bands.json`` while
    the images are unchanged, else computed in one streamed pass over them).
    """
    store = open_store(dest_setting(dest), endpoint_url=endpoint_url)
    data = store.read_bytes(IMAGES_FILE)
    if data is None:
        if not build_if_missing:
            raise IndexMissingError(
                f"no index at {store.url}",
                file=IMAGES_FILE,
                hint="build it first with `xview2 index`",
            )
        build_index(store.url, endpoint_url=endpoint_url, progress=progress)
        data = store.read_bytes(IMAGES_FILE)
        if data is None:
            raise IndexMissingError(f"the index was not written to {store.url}")
    columns = [
        "layout",
        "split",
        "disaster",
        "image_id",
        "phase",
        "n_buildings",
        *COUNT_COLUMNS.values(),
    ]
    # One small table: read it on this thread.  pyarrow 26's reader thread pool can
    # abort the process at exit ("terminate called without an active exception").
    table = pq.read_table(pa.BufferReader(data), columns=columns, use_threads=False)
    stats = stats_from_table(table.to_pydict(), store.url)
    if bands:
        from ..prepare.bands import band_stats

        found = band_stats(store.url, endpoint_url=endpoint_url, progress=progress)
        stats.bands = {s: [b.to_dict() for b in found.splits[s]] for s in found.splits}
    return stats


def stats_from_table(cols: dict[str, list[Any]], dest: str = "") -> DatasetStats:
    """:class:`DatasetStats` from the columns of ``images.parquet`` (as Python lists)."""
    layouts = set(cols["layout"])
    layout = "challenge" if "challenge" in layouts or not layouts else sorted(layouts)[0]
    groups: dict[tuple[str, str], GroupStats] = {}
    phases: dict[tuple[str, str, str], int] = {}
    for i, row_layout in enumerate(cols["layout"]):
        if row_layout != layout:
            continue
        split, disaster, phase = cols["split"][i], cols["disaster"][i], cols["phase"][i]
        g = groups.setdefault((split, disaster), GroupStats(split, disaster))
        g.images += 1
        key = (split, disaster, cols["image_id"][i])
        phases[key] = phases.get(key, 0) | (1 if phase == "pre" else 2)
        if phase == "post":
            for c, col in COUNT_COLUMNS.items():
                g.damage[c] += cols[col][i] or 0
        else:
            g.buildings_pre += cols["n_buildings"][i] or 0
    for (split, disaster, _), seen in phases.items():
        if seen == 3:
            groups[(split, disaster)].pairs += 1
    order = {s: i for i, s in enumerate(SPLITS)}
    ordered = sorted(
        groups.values(), key=lambda g: (order.get(g.split, len(order)), g.split, g.disaster)
    )
    return DatasetStats(dest, layout, ordered)
