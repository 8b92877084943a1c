"""WKT polygons of the label files to WKB, areas and bounds, fast and exactly.

xView2 labels hold every building twice as WKT text, ``POLYGON ((x y, x y, ...))``, in
geographic (``lng_lat``) and pixel (``xy``) coordinates: about 1.7 million polygons and
30 million numbers for the whole dataset.  Parsing them one by one (GEOS included) would
cost far more than reading the JSON, so a batch of polygons is parsed at once:

1. the strings are joined into one buffer with a sentinel line between polygons;
2. one :meth:`bytes.translate` turns the punctuation into line breaks and drops the
   keyword, leaving one number per line;
3. Arrow's CSV reader (``fast_float``) parses all numbers in one C call, the sentinels
   becoming nulls that mark where each polygon ends;
4. NumPy checks every ring (even number of values, at least 4 points, closed) and builds
   the WKB buffers, areas (shoelace) and bounds without a Python loop.

The fast path only accepts what it can parse unambiguously: a batch whose strings are not
all plain single-ring ``POLYGON ((...))`` (holes, ``MULTIPOLYGON``, ``EMPTY``, odd
spacing, anything malformed) is split, and the odd strings go through a strict
pure-Python parser that accepts any 2-D polygon or multipolygon and explains what is
wrong with the rest.  Both paths give the same results.
"""

from __future__ import annotations

import io
import logging
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

log = logging.getLogger(__name__)

POLYGON, MULTIPOLYGON = 3, 6
TYPE_NAMES = {POLYGON: "Polygon", MULTIPOLYGON: "MultiPolygon"}

_SENTINEL = "S"
# Punctuation becomes line breaks; the letters of the keyword are dropped.  Any other
# character left over makes the CSV reader fail, which sends the batch to the slow path.
_TO_LINES = bytes.maketrans(b",() ", b"\n\n\n\n")
_DROP = b"POLYGN"
_READ = pacsv.ReadOptions(column_names=["v"], use_threads=False, block_size=1 << 22)
_PARSE = pacsv.ParseOptions(delimiter="\t", quote_char=False, ignore_empty_lines=True)
_CONVERT = pacsv.ConvertOptions(
    column_types={"v": pa.float64()}, null_values=[_SENTINEL], strings_can_be_null=False
)

Ring = list[tuple[float, float]]
PolygonRings = list[Ring]


class WKTError(ValueError):
    """A WKT string that is not a valid 2-D polygon or multipolygon."""


@dataclass
class Polygons:
    """A batch of parsed polygons.

    Simple polygons (one ring, the xView2 norm) live in ``xs``/``ys`` from ``starts[i]``
    for ``counts[i]`` vertices; the others are in ``slow`` as ``(type, polygons)``.
    ``errors`` maps the index of each unparseable string to the reason.
    """

    n: int
    xs: np.ndarray
    ys: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    slow: dict[int, tuple[int, list[PolygonRings]]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


_SLOW_CHUNK = 32


def parse_polygons(strings: Sequence[object]) -> Polygons:
    """Parse ``strings`` (WKT, normally all ``POLYGON``) into a :class:`Polygons`."""
    n = len(strings)
    try:
        return _fast(strings)
    except _NotFast as why:
        log.debug("WKT batch of %d not on the fast path: %s", n, why)
    out = Polygons(n, np.empty(0), np.empty(0), np.zeros(n, np.int64), np.zeros(n, np.int64))
    pieces: list[tuple[list[int], Polygons]] = []

    def solve(idx: list[int]) -> None:
        """Fast path for ``idx``, halving around whatever makes it fail."""
        if len(idx) > _SLOW_CHUNK:
            try:
                pieces.append((idx, _fast([strings[i] for i in idx])))
                return
            except _NotFast:
                half = len(idx) // 2
                solve(idx[:half])
                solve(idx[half:])
                return
        for i in idx:
            slow(i)

    def slow(i: int) -> None:
        try:
            out.slow[i] = parse_wkt(strings[i])
        except WKTError as exc:
            out.errors[i] = str(exc)

    plain = []
    for i, s in enumerate(strings):
        if isinstance(s, str) and _plain(s):
            plain.append(i)
        else:
            slow(i)
    solve(plain)
    base = 0
    for idx, part in pieces:
        where = np.asarray(idx, dtype=np.int64)
        out.starts[where] = part.starts + base
        out.counts[where] = part.counts
        out.errors.update({idx[k]: reason for k, reason in part.errors.items()})
        base += len(part.xs)
    if pieces:
        out.xs = np.concatenate([part.xs for _, part in pieces])
        out.ys = np.concatenate([part.ys for _, part in pieces])
    return out


class _NotFast(Exception):
    pass


def _plain(s: str) -> bool:
    return s.startswith("POLYGON ((") and s.endswith("))") and s.count("(") == 2 == s.count(")")


def _fast(strings: Sequence[object]) -> Polygons:
    n = len(strings)
    if n == 0:
        empty = np.empty(0, dtype=np.int64)
        return Polygons(0, np.empty(0), np.empty(0), empty, empty)
    try:
        raw = ("\n" + _SENTINEL + "\n").join(strings).encode()  # type: ignore[arg-type]
    except (TypeError, UnicodeEncodeError) as exc:
        raise _NotFast("not all strings") from exc
    view = np.frombuffer(raw, dtype=np.uint8)
    opens = np.count_nonzero(view == ord("("))
    closes = np.count_nonzero(view == ord(")"))
    commas = np.count_nonzero(view == ord(","))
    keywords = np.count_nonzero(view == ord("P"))  # only POLYGON has a P: one each
    if opens != 2 * n or closes != 2 * n or keywords != n:
        raise _NotFast("not all plain single-ring POLYGONs")
    try:
        table = pacsv.read_csv(
            io.BytesIO(raw.translate(_TO_LINES, _DROP)),
            read_options=_READ,
            parse_options=_PARSE,
            convert_options=_CONVERT,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _NotFast(str(exc).splitlines()[0]) from exc
    column = table.column(0).combine_chunks()
    if column.null_count != n - 1:
        raise _NotFast("polygon separators out of place")
    # read the buffers directly (no conversion through pandas-aware paths)
    size, offset = len(column), column.offset
    bitmap, data = column.buffers()
    numbers = np.frombuffer(data, dtype=np.float64, count=offset + size)[offset:]
    if bitmap is None:
        valid = np.ones(size, dtype=bool)
    else:
        bits = np.frombuffer(bitmap, dtype=np.uint8)
        valid = np.unpackbits(bits, count=offset + size, bitorder="little")[offset:].view(bool)
    ends = np.flatnonzero(~valid)
    values = numbers[valid]
    bounds = np.concatenate([[-1], ends, [size]])
    nvalues = np.diff(bounds) - 1
    if commas != int(nvalues.sum()) // 2 - n:
        raise _NotFast("coordinates are not all pairs")
    if np.any(nvalues % 2):
        raise _NotFast("a coordinate is not an x y pair")
    if not np.isfinite(values).all():
        raise _NotFast("a coordinate is not a finite number")  # nan, inf: rejected slowly
    errors: dict[int, str] = {}
    xs, ys = values[0::2], values[1::2]
    counts = nvalues // 2
    starts = np.cumsum(counts) - counts
    short = counts < 4
    last = starts + np.maximum(counts, 1) - 1
    safe_starts = np.minimum(starts, max(len(xs) - 1, 0))
    safe_last = np.minimum(last, max(len(xs) - 1, 0))
    if len(xs):
        unclosed = (xs[safe_starts] != xs[safe_last]) | (ys[safe_starts] != ys[safe_last])
    else:
        unclosed = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(short).tolist():
        errors[i] = f"a polygon ring needs at least 4 points, got {int(counts[i])}"
    for i in np.flatnonzero(unclosed & ~short).tolist():
        errors[i] = "the polygon ring is not closed"
    bad = short | unclosed
    if bad.any():
        counts = np.where(bad, 0, counts)
    return Polygons(n, xs, ys, starts, counts, {}, errors)


# ---------------------------------------------------------------------------- slow path

_TOKEN = re.compile(r"\s*(?:([A-Za-z]+)|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|([(),]))")


def _tokens(text: str) -> list[str | float]:
    out: list[str | float] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise WKTError(f"unexpected text at character {pos}: {text[pos : pos + 12]!r}")
        word, number, punct = m.groups()
        if number is not None:
            out.append(float(number))
        else:
            out.append((word or punct).upper())
        pos = m.end()
    return out


def parse_wkt(text: object) -> tuple[int, list[PolygonRings]]:
    """Parse a 2-D ``POLYGON`` or ``MULTIPOLYGON``; return (WKB type, polygons)."""
    if not isinstance(text, str):
        raise WKTError(f"WKT must be a string, got {type(text).__name__}")
    if not text.strip():
        raise WKTError("empty WKT string")
    toks = _tokens(text)
    pos = 0

    def take(expected: str) -> None:
        nonlocal pos
        got = toks[pos] if pos < len(toks) else "end of text"
        if got != expected:
            raise WKTError(f"expected {expected!r}, got {got!r}")
        pos += 1

    def ring() -> Ring:
        nonlocal pos
        take("(")
        points: Ring = []
        while True:
            x, y = [*toks[pos : pos + 2], "end", "end"][:2]
            if not isinstance(x, float) or not isinstance(y, float):
                raise WKTError("expected an x y coordinate pair")
            pos += 2
            if pos < len(toks) and isinstance(toks[pos], float):
                raise WKTError("only 2-D coordinates are supported")
            points.append((x, y))
            if pos < len(toks) and toks[pos] == ",":
                pos += 1
                continue
            take(")")
            break
        if len(points) < 4:
            raise WKTError(f"a polygon ring needs at least 4 points, got {len(points)}")
        if points[0] != points[-1]:
            raise WKTError("the polygon ring is not closed")
        return points

    def polygon() -> PolygonRings:
        nonlocal pos
        if pos < len(toks) and toks[pos] == "EMPTY":
            pos += 1
            return []
        take("(")
        rings = [ring()]
        while pos < len(toks) and toks[pos] == ",":
            pos += 1
            rings.append(ring())
        take(")")
        return rings

    kind = toks[0]
    pos = 1
    if pos < len(toks) and toks[pos] in ("Z", "M", "ZM"):
        raise WKTError("only 2-D coordinates are supported")
    if kind == "POLYGON":
        geom_type, polys = POLYGON, [polygon()]
    elif kind == "MULTIPOLYGON":
        geom_type, polys = MULTIPOLYGON, []
        if pos < len(toks) and toks[pos] == "EMPTY":
            pos += 1
        else:
            take("(")
            polys.append(polygon())
            while pos < len(toks) and toks[pos] == ",":
                pos += 1
                polys.append(polygon())
            take(")")
    else:
        raise WKTError(f"expected a POLYGON or MULTIPOLYGON, got {str(kind)[:20]!r}")
    if pos != len(toks):
        raise WKTError(f"unexpected {toks[pos]!r} after the geometry")
    return geom_type, polys


def _ring_area(points: Ring) -> float:
    # summed in order, like the vectorised path, so both give the same float
    total = 0.0
    for (x0, y0), (x1, y1) in pairwise(points):
        total += x0 * y1 - x1 * y0
    return 0.5 * abs(total)


def _slow_area(polys: list[PolygonRings]) -> float:
    return sum(
        _ring_area(rings[0]) - sum(_ring_area(r) for r in rings[1:]) for rings in polys if rings
    )


def _slow_wkb(geom_type: int, polys: list[PolygonRings]) -> bytes:
    def poly_wkb(rings: PolygonRings) -> bytes:
        parts = [struct.pack("<BII", 1, POLYGON, len(rings))]
        for r in rings:
            parts.append(struct.pack("<I", len(r)))
            parts.append(struct.pack(f"<{2 * len(r)}d", *(v for p in r for v in p)))
        return b"".join(parts)

    if geom_type == POLYGON:
        return poly_wkb(polys[0] if polys else [])
    return struct.pack("<BII", 1, MULTIPOLYGON, len(polys)) + b"".join(map(poly_wkb, polys))


# ------------------------------------------------------------------------ derived values


def areas(p: Polygons, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Planar area of polygons ``lo:hi`` (NaN for the unparseable ones)."""
    hi = p.n if hi is None else hi
    out = np.full(hi - lo, np.nan)
    counts = p.counts[lo:hi]
    sel = np.flatnonzero(counts > 0)
    if sel.size:
        starts = p.starts[lo:hi][sel]
        cnt = counts[sel]
        first = int(starts[0])
        x = p.xs[first : int(starts[-1] + cnt[-1])]
        y = p.ys[first : int(starts[-1] + cnt[-1])]
        # shoelace terms x[i] y[i+1] - x[i+1] y[i], summed within each ring only
        cross = np.zeros(len(x) + 1)
        cross[: len(x) - 1] = x[:-1] * y[1:] - x[1:] * y[:-1]
        rel = starts - first
        cross[rel + cnt - 1] = 0.0  # the term joining a ring to the next one
        edges = np.empty(2 * sel.size, dtype=np.int64)
        edges[0::2], edges[1::2] = rel, rel + cnt
        out[sel] = 0.5 * np.abs(np.add.reduceat(cross, edges)[0::2])
    for i, (_, polys) in p.slow.items():
        if lo <= i < hi:
            out[i - lo] = _slow_area(polys)
    return out


def wkb(p: Polygons, lo: int = 0, hi: int | None = None) -> tuple[pa.Array, set[str], list[float]]:
    """WKB (little endian, ISO) of polygons ``lo:hi``; also their type names and bounds.

    Unparseable polygons give null.  Bounds are ``[minx, miny, maxx, maxy]``, or ``[]``
    when there is no coordinate.
    """
    hi = p.n if hi is None else hi
    n = hi - lo
    counts = p.counts[lo:hi]
    starts = p.starts[lo:hi]
    simple = counts > 0
    sizes = np.where(simple, 13 + 16 * counts, 0)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    buf = np.empty(total, dtype=np.uint8)
    types: set[str] = set()
    lo_x = lo_y = math.inf
    hi_x = hi_y = -math.inf
    sel = np.flatnonzero(simple)
    if sel.size:
        types.add("Polygon")
        head = np.zeros((sel.size, 13), dtype=np.uint8)
        head[:, 0] = 1  # little endian
        head[:, 1] = POLYGON
        head[:, 5] = 1  # one ring
        head[:, 9:13] = counts[sel].astype("<u4").view(np.uint8).reshape(-1, 4)
        head_at = offsets[:-1][sel, None] + np.arange(13)
        buf[head_at.ravel()] = head.ravel()
        body = np.ones(total, dtype=bool)
        body[head_at.ravel()] = False
        # the coordinates of the selected rings, interleaved x y, in output order
        vidx = np.repeat(starts[sel] - np.cumsum(counts[sel]) + counts[sel], counts[sel])
        vidx += np.arange(vidx.size)
        xs, ys = p.xs[vidx], p.ys[vidx]
        coords = np.empty(2 * vidx.size, dtype="<f8")
        coords[0::2], coords[1::2] = xs, ys
        buf[body] = coords.view(np.uint8)
        lo_x, hi_x = float(xs.min()), float(xs.max())
        lo_y, hi_y = float(ys.min()), float(ys.max())
    valid = np.ones(n, dtype=bool)
    for i in p.errors:
        if lo <= i < hi:
            valid[i - lo] = False
    slow = {i - lo: v for i, v in p.slow.items() if lo <= i < hi}
    if not slow:
        mask = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        arr = pa.Array.from_buffers(
            pa.binary(),
            n,
            [mask, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(buf)],
            null_count=int(n - valid.sum()),
        )
        return arr, types, ([lo_x, lo_y, hi_x, hi_y] if sel.size else [])
    # rare: merge the few odd geometries in Python
    blob = buf.tobytes()
    items: list[bytes | None] = []
    for k in range(n):
        if k in slow:
            geom_type, polys = slow[k]
            types.add(TYPE_NAMES[geom_type])
            items.append(_slow_wkb(geom_type, polys))
            for rings in polys:
                for r in rings:
                    for x, y in r:
                        lo_x, hi_x = min(lo_x, x), max(hi_x, x)
                        lo_y, hi_y = min(lo_y, y), max(hi_y, y)
        elif valid[k]:
            items.append(blob[offsets[k] : offsets[k + 1]])
        else:
            items.append(None)
    bounds = [lo_x, lo_y, hi_x, hi_y] if lo_x <= hi_x else []
    return pa.array(items, pa.binary()), types, bounds
