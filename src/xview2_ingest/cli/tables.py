"""The ``status`` and ``stats`` tables, laid out for the terminal's width.

Numbers, dates and digests are never cut: file names are elided in the middle first,
then the least useful columns are left out, and the statistics split into narrower
tables (counts, damage, damage shares) when one wide table does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.text import Text

from xview2_ingest.reports import StatusReport, unfinished_words

from .progress import elide_middle

GAP = 2
NAME_MIN = 20
STATE_STYLES = {
    "verified": "green",
    "unverified": "yellow",
    "partial": "cyan",
    "missing": "dim",
    "corrupt": "bold red",  # found by `xview2 verify`: `download` fetches it again
    "truncated": "bold red",  # another size than verified: `download` fetches it again
    "extracted": "blue",  # removed after its verified extraction
}


@dataclass
class Column:
    header: str
    cells: list[str]
    right: bool = False
    elide: bool = False
    """May be elided in the middle down to ``NAME_MIN`` (names, never numbers)."""
    optional: int = 0
    """0: always shown; otherwise left out when it does not fit, highest first."""
    styles: list[str] = field(default_factory=list)

    @property
    def natural(self) -> int:
        return max([len(self.header), *(len(c) for c in self.cells)])


def fit(columns: Sequence[Column], width: int) -> list[tuple[Column, int]]:
    """The columns that fit ``width`` with their widths (see the module)."""
    shown = list(columns)
    while True:
        widths = [c.natural for c in shown]
        over = sum(widths) + GAP * (len(shown) - 1) - width
        for i, c in enumerate(shown):
            if over > 0 and c.elide:
                cut = min(over, widths[i] - max(NAME_MIN, len(c.header)))
                widths[i] -= max(0, cut)
                over -= max(0, cut)
        optional = [c for c in shown if c.optional]
        if over <= 0 or not optional:
            return list(zip(shown, widths, strict=True))
        shown.remove(max(optional, key=lambda c: c.optional))


def render(title: str, columns: Sequence[Column], width: int) -> Group:
    """A title, a bold header and one line per row, in ``width`` columns."""
    layout = fit(columns, width)
    lines = [Text(""), Text(title, style="bold")]
    rows = len(columns[0].cells) if columns else 0
    for r in range(-1, rows):
        line = Text(no_wrap=True, overflow="crop")
        for i, (col, w) in enumerate(layout):
            text = col.header if r < 0 else col.cells[r]
            text = elide_middle(text, w) if col.elide else text
            cell = text.rjust(w) if col.right else text.ljust(w)
            style = "bold" if r < 0 else (col.styles[r] if col.styles else "")
            line.append(("" if i == 0 else " " * GAP) + cell, style)
        lines.append(line)
    return Group(*lines)


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def short_time(iso: str | None) -> str:
    """``2024-05-01T12:00:07+00:00`` -> ``2024-05-01 12:00`` (UTC)."""
    return iso[:16].replace("T", " ") if iso else ""


def status_table(report: StatusReport, width: int) -> Group:
    files = report.files
    size = [
        human_size(f.size)
        if f.size
        else (f"{human_size(f.bytes_done)} so far" if f.bytes_done else "")
        for f in files
    ]
    columns = [
        Column("file", [f.name for f in files], elide=True),
        Column("state", [f.state for f in files], styles=[STATE_STYLES[f.state] for f in files]),
        Column("size", size, right=True),
        Column("verified at (UTC)", [short_time(f.verified_at) for f in files], optional=1),
        Column("sha1", [(f.sha1 or "")[:12] for f in files], optional=2),
    ]
    parts: list[Any] = [render(f"xview2 at {report.dest}", columns, width)]
    if report.pending:
        words = unfinished_words(report.dest, len(report.pending))
        parts.append(Text(f"{words}; `xview2 clean` discards them:"))
        for p in report.pending:
            parts.append(
                Text(f"  {p.name}: {p.parts_done} parts, {human_size(p.bytes_done)} ({p.detail})")
            )
    return Group(*parts)


SHORT_DAMAGE = {
    "no-damage": "no-damage",
    "minor-damage": "minor",
    "major-damage": "major",
    "destroyed": "destroyed",
    "un-classified": "unclass.",
}


def stats_tables(stats: Any, width: int) -> Group:
    """Per split and per disaster: one wide table each when it fits, else counts, damage
    and damage shares as three narrow ones."""
    classes = list(stats.to_dict()["damage_classes"])
    total = stats.total()
    groups = [
        ("xView2 by split", "split", [(g.split, g) for g in stats.by_split()]),
        ("by disaster", "disaster", [(g.disaster, g) for g in stats.by_disaster()]),
    ]
    out: list[Any] = []
    for title, first, rows in groups:
        rows = [*rows, ("total", total)]
        labels = [label for label, _ in rows]

        def num(values: list[int]) -> list[str]:
            return [f"{v:,}" for v in values]

        counts = [
            Column(first, labels),
            Column("pairs", num([g.pairs for _, g in rows]), right=True),
            Column("images", num([g.images for _, g in rows]), right=True),
            Column("pre bldgs", num([g.buildings_pre for _, g in rows]), right=True),
            Column("post bldgs", num([g.buildings_post for _, g in rows]), right=True),
        ]
        wide = [
            Column(c, [f"{g.damage[c]:,} ({g.shares[c]:.1%})" for _, g in rows], right=True)
            for c in classes
        ]
        narrow = [
            Column(SHORT_DAMAGE.get(c, c), num([g.damage[c] for _, g in rows]), right=True)
            for c in classes
        ]
        shares = [
            Column(SHORT_DAMAGE.get(c, c), [f"{g.shares[c]:.1%}" for _, g in rows], right=True)
            for c in classes
        ]
        one = [*counts, *wide]
        if sum(c.natural for c in one) + GAP * (len(one) - 1) <= width:
            out.append(render(f"{title} (damage: post-disaster buildings, share)", one, width))
        else:
            out.append(render(title, counts, width))
            label = Column(first, labels)
            out.append(
                render(f"{title}: post-disaster buildings by damage", [label, *narrow], width)
            )
            out.append(
                render(f"{title}: share of post-disaster buildings", [label, *shares], width)
            )
    return Group(*out)
