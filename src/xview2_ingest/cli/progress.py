"""The progress display: one row per file and a total, laid out for the terminal's width.

Rich's own progress table squeezes every column when the terminal is narrow, cutting
numbers to ``6.3/…`` and wrapping units.  Here each row is laid out by :func:`plan`:
numbers are never cut; the columns that matter least (note, bar, time left, rate) are
dropped first, and file names are elided in the middle.  The rate is measured by
:class:`RateWindow` over a few seconds of the row's own received bytes, so a burst at the
start never shows a speed the network did not deliver.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

GAP = 1
NAME_MIN = 20
BAR_MIN, BAR_MAX = 10, 40
NOTE_MIN = 8
ETA_WIDTH = 7
UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


class RateWindow:
    """Bytes per second received over the last ``window`` seconds.

    The rate is the bytes of the samples in the window divided by the window, or by the
    row's age when it is younger (but at least ``floor`` seconds): it never exceeds what
    was received in the last few seconds, and a first burst does not read as a speed.
    """

    def __init__(
        self,
        window: float = 3.0,
        floor: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window, self.floor, self.clock = window, floor, clock
        self.started = clock()
        self.received = 0
        self.last = self.started
        self._samples: deque[tuple[float, int]] = deque()
        self._in_window = 0

    def add(self, n: int) -> None:
        now = self.clock()
        self._samples.append((now, n))
        self._in_window += n
        self.received += n
        self.last = now
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._samples and self._samples[0][0] <= now - self.window:
            self._in_window -= self._samples.popleft()[1]

    def rate(self) -> float:
        now = self.clock()
        self._expire(now)
        span = min(self.window, max(self.floor, now - self.started))
        return self._in_window / span

    def mean(self) -> float:
        """The average over the row's whole life (for finished rows)."""
        return self.received / max(self.floor, self.last - self.started)


@dataclass
class Row:
    label: str
    total: int | None = None
    completed: int = 0
    note: str = ""
    note_style: str = ""
    finished: bool = False
    rate: RateWindow = field(default_factory=RateWindow)
    bold: bool = False


@dataclass(frozen=True)
class Plan:
    """Column widths for one terminal width; 0 means the column is left out."""

    name: int
    size: int
    rate: int
    eta: int
    bar: int
    note: int


def plan(width: int, name: int, size: int, rate: int, note: int) -> Plan:
    """Widths that fit ``width``: numbers whole, least useful columns dropped first.

    Priority: size, then the name (elided down to ``NAME_MIN``), rate, time left, the
    bar, the note; what is left widens the name, the note and the bar, in that order.
    """
    name_w = min(name, NAME_MIN)
    left = width - size - GAP - name_w

    def take(want: int) -> int:
        nonlocal left
        if want and left >= want + GAP:
            left -= want + GAP
            return want
        return 0

    rate_w = take(rate)
    eta_w = take(ETA_WIDTH)
    bar_w = take(BAR_MIN)
    note_w = take(min(note, NOTE_MIN)) if note else 0
    grow = min(max(0, left), name - name_w)
    name_w, left = name_w + grow, left - grow
    if note_w and note > note_w:
        grow = min(left, note - note_w)
        note_w, left = note_w + grow, left - grow
    elif not note_w and note and left >= note + GAP:
        note_w, left = note, left - note - GAP
    if bar_w:
        bar_w += min(left, BAR_MAX - bar_w)
    return Plan(max(0, name_w), size, rate_w, eta_w, bar_w, note_w)


def elide_middle(text: str, width: int) -> str:
    """``text`` in ``width`` characters, its middle replaced by one ellipsis."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    tail = width - 1 - head
    return f"{text[:head]}…{text[len(text) - tail :]}"


def _scale(value: float) -> tuple[float, str]:
    for unit in UNITS[:-1]:
        if abs(value) < 1000:
            return value, unit
        value /= 1000
    return value, UNITS[-1]


def _unit_of(value: float) -> tuple[int, str]:
    divisor = 1
    for unit in UNITS[:-1]:
        if value < 1000 * divisor:
            return divisor, unit
        divisor *= 1000
    return divisor, UNITS[-1]


def size_text(completed: int, total: int | None) -> str:
    """``79.7/192.1 MB``: both in the unit of the total, so the unit is said once."""
    divisor, unit = _unit_of(float(total if total else completed))
    if unit == "B":
        return f"{completed}/{total} B" if total else f"{completed} B"
    done = f"{completed / divisor:.1f}"
    return f"{done}/{total / divisor:.1f} {unit}" if total else f"{done} {unit}"


def rate_text(rate: float) -> str:
    value, unit = _scale(rate)
    return f"{value:.1f} {unit}/s" if unit != "B" else f"{value:.0f} B/s"


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(seconds + 0.5)
    hours = min(seconds // 3600, 99)
    return f"{hours}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RowsView:
    """The rows as a rich renderable: laid out anew for the width at every refresh."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.lock = threading.Lock()

    def _cells(self, row: Row) -> tuple[str, str, float | None]:
        speed = row.rate.mean() if row.finished else row.rate.rate()
        left = None
        if not row.finished and row.total and speed > 0:
            left = max(0, row.total - row.completed) / speed
        shown = rate_text(speed) if row.rate.received or not row.finished else ""
        return size_text(row.completed, row.total), shown, left

    def lines(self, width: int) -> Iterator[Text]:
        with self.lock:
            rows = list(self.rows)
        cells = [self._cells(r) for r in rows]
        layout = plan(
            width,
            max((len(r.label) for r in rows), default=0),
            max((len(s) for s, _, _ in cells), default=0),
            max((len(v) for _, v, _ in cells), default=0),
            max((len(r.note) for r in rows), default=0),
        )
        for row, (size, speed, left) in zip(rows, cells, strict=True):
            yield self._line(row, layout, size, speed, left)

    def _line(self, row: Row, p: Plan, size: str, speed: str, left: float | None) -> Text:
        line = Text(no_wrap=True, overflow="crop")
        line.append(elide_middle(row.label, p.name).ljust(p.name), "bold" if row.bold else "")
        if p.bar:
            line.append(" ")
            line.append_text(bar_text(row.completed, row.total, p.bar))
        line.append(" " + size.rjust(p.size))
        if p.rate:
            line.append(" " + speed.rjust(p.rate))
        if p.eta:
            shown = "" if row.finished else eta_text(left)
            line.append(" " + shown.rjust(p.eta))
        if p.note and row.note and len(row.note) <= p.note:
            line.append(" " + row.note, row.note_style)
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)


def bar_text(completed: int, total: int | None, width: int) -> Text:
    """A bar of ``width`` cells in half-cell steps (a bar of unknown total is empty)."""
    halves = 0
    if total:
        halves = int(2 * width * min(1.0, max(0, completed) / total))
    full, half = divmod(halves, 2)
    text = Text("━" * full, style="bar.finished" if halves == 2 * width else "bar.complete")
    if half:
        text.append("╸", "bar.complete")
    text.append("━" * (width - full - half), "bar.back")
    return text
