"""Resume state is untrusted input: every record is checked here, in one place, before use.

Resume state lives at the destination (a journal beside a local partial file, an object
under ``PREFIX/.xview2/state/`` in a bucket) and in a local copy on this machine.  Anyone
who can write there can write it, and a crash or a full disk can leave it torn.  So each
record is parsed with a size cap, checked field by field (types, ranges, lengths, the
digest algorithm and the length of its saved state, the file's identity on the server)
and turned into a small typed value; the stores and the engine never read the raw JSON.

A record that fails any check raises :class:`InvalidState` with the reason.  The caller
logs a warning naming the file and starts that file over: a bad state can cost a
download, never a crash and never a wrong file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .digest import check_state

MAX_STATE_BYTES = 1 << 20
"""A resume record is a few hundred bytes; anything larger than this is refused unread."""
MAX_UPLOAD_ID = 1024
MAX_PART_SIZE = 5 << 30


class InvalidState(ValueError):
    """A resume record that cannot be trusted; the message says why."""


def parse(raw: bytes | str | None) -> dict[str, Any] | None:
    """A JSON object from ``raw`` (None when there is none); :class:`InvalidState` if it is
    too large, not JSON, nested too deeply, or not an object."""
    if raw is None or len(raw) == 0:
        return None
    if len(raw) > MAX_STATE_BYTES:
        raise InvalidState(f"{len(raw):,} bytes, more than a resume record can be")
    try:
        loaded = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidState(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(loaded, dict):
        raise InvalidState(f"a JSON {type(loaded).__name__}, not an object")
    return loaded


def read_file(path: Path) -> dict[str, Any] | None:
    """The record in ``path``; None when it is missing or unreadable, :class:`InvalidState`
    when it is there but cannot be a record."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_STATE_BYTES + 1)
    except OSError:
        return None
    return parse(raw)


def _int(record: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = record.get(key)
    if type(value) is not int or not low <= value <= high:
        raise InvalidState(f"{key!r} is {_show(value)}, not a whole number in [{low}, {high}]")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def part_count(size: int, part_size: int) -> int:
    return math.ceil(size / part_size) if size else 0


def part_len(index: int, size: int, part_size: int) -> int:
    return min(part_size, size - index * part_size)


def _parts_kept(value: object, size: int, part_size: int) -> dict[int, int]:
    """``{"3": 1048576}``: bytes kept of unfinished parts, each less than its part."""
    if value is None:
        return {}
    nparts = part_count(size, part_size)
    if not isinstance(value, dict) or len(value) > nparts:
        raise InvalidState("the kept bytes of unfinished parts are not a small object")
    out: dict[int, int] = {}
    for key, kept in value.items():
        if not (isinstance(key, str) and key.isdigit() and len(key) <= 12):
            raise InvalidState(f"part {_show(key)} is no part number")
        index = int(key)
        if index >= nparts:
            raise InvalidState(f"part {index} is beyond the last part ({nparts - 1})")
        if type(kept) is not int or not 0 < kept <= part_len(index, size, part_size):
            raise InvalidState(f"part {index} keeps {_show(kept)} bytes, more than it has")
        out[index] = kept
    return out


def _runs(value: object, nparts: int) -> set[int]:
    """``[[0, 3], [5, 7]]`` -> {0, 1, 2, 5, 6}, each run inside the file's parts."""
    if not isinstance(value, list) or len(value) > nparts:
        raise InvalidState("the list of parts done is not a short list of runs")
    done: set[int] = set()
    for run in value:
        if (
            not isinstance(run, list)
            or len(run) != 2
            or any(type(x) is not int for x in run)
            or not 0 <= run[0] < run[1] <= nparts
        ):
            raise InvalidState(f"the run of parts {_show(run)} is not inside parts 0-{nparts}")
        done.update(range(run[0], run[1]))
    return done


def _engine(value: object) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise InvalidState("the engine's state is not an object")
    return value


@dataclass(frozen=True)
class LocalRecord:
    """A local partial file's journal."""

    part_size: int
    done: set[int]
    partial: dict[int, int]
    engine: dict[str, Any] | None
    boot: str | None


def local_record(record: Mapping[str, Any], *, size: int, max_parts: int) -> LocalRecord:
    """Check a local journal for a file of ``size`` bytes."""
    if record.get("size") != size or type(record.get("size")) is not int:
        raise InvalidState(f"it is for {_show(record.get('size'))} bytes, not {size:,}")
    part_size = _int(record, "part_size", 1, MAX_PART_SIZE)
    nparts = part_count(size, part_size)
    if nparts > max_parts:
        raise InvalidState(f"{nparts:,} parts, more than the store's {max_parts:,}")
    boot = record.get("boot")
    if boot is not None and not (isinstance(boot, str) and len(boot) <= 64):
        raise InvalidState("its boot id is not a short string")
    done = _runs(record.get("done", []), nparts)
    partial = _parts_kept(record.get("partial"), size, part_size)
    return LocalRecord(
        part_size,
        done,
        {i: n for i, n in partial.items() if i not in done},
        _engine(record.get("engine")),
        boot,
    )


@dataclass(frozen=True)
class RemoteRecord:
    """A remote upload's state: the object beside it, or its local copy."""

    upload_id: str
    part_size: int
    checksum: str | None
    engine: dict[str, Any] | None
    spooled: dict[int, int] = field(default_factory=dict)
    """Bytes of parts kept in this machine's spool (only in the local copy)."""


def remote_record(
    record: Mapping[str, Any],
    *,
    key: str,
    size: int,
    min_part_size: int,
    max_parts: int,
    checksums: tuple[str | None, ...],
) -> RemoteRecord:
    """Check a remote upload's state for ``key`` of ``size`` bytes."""
    upload_id = record.get("upload_id")
    if not (
        isinstance(upload_id, str)
        and 0 < len(upload_id) <= MAX_UPLOAD_ID
        and upload_id.isprintable()
    ):
        raise InvalidState(f"its upload id {_show(upload_id)} is not a short printable string")
    if record.get("key") not in (None, key):
        raise InvalidState(f"it is for {_show(record.get('key'))}, not {key}")
    if record.get("size") != size or type(record.get("size")) is not int:
        raise InvalidState(f"it is for {_show(record.get('size'))} bytes, not {size:,}")
    part_size = _int(record, "part_size", min_part_size, MAX_PART_SIZE)
    if part_count(size, part_size) > max_parts:
        raise InvalidState(f"{part_count(size, part_size):,} parts, more than {max_parts:,}")
    checksum = record.get("checksum")
    if checksum not in checksums:
        raise InvalidState(f"part checksum {_show(checksum)} is none of {checksums}")
    spooled = _parts_kept(record.get("spool"), size, part_size)
    return RemoteRecord(upload_id, part_size, checksum, _engine(record.get("engine")), spooled)


@dataclass(frozen=True)
class EngineState:
    """The engine's own resume state: how many parts are hashed and the digests' state."""

    hashed: int
    digests: dict[str, str]


def engine_state(
    state: Mapping[str, Any],
    *,
    identity: Mapping[str, object],
    algorithms: list[str],
    size: int,
    part_size: int,
    done: set[int],
) -> EngineState:
    """Check the engine's state against the file on the server and the parts persisted.

    The identity must be the server's (size, ETag, Last-Modified) now; ``hashed`` must
    count parts that are all persisted; every digest wanted must be there, for a known
    algorithm, with a saved state of the right length whose byte count is exactly the
    bytes of the hashed parts.
    """
    if state.get("identity") != dict(identity):
        raise InvalidState("the file changed on the server since the last run")
    nparts = part_count(size, part_size)
    hashed = _int(state, "hashed", 0, nparts)
    missing = [i for i in range(hashed) if i not in done]
    if missing:
        raise InvalidState(f"{hashed} parts counted as hashed, but part {missing[0]} is missing")
    saved = state.get("digests")
    if not isinstance(saved, dict):
        raise InvalidState("no digest state")
    covered = min(size, hashed * part_size)
    digests: dict[str, str] = {}
    for algo in algorithms:
        value = saved.get(algo)
        if not isinstance(value, str):
            raise InvalidState(f"no saved {algo} state")
        try:
            check_state(algo, value, covered)
        except ValueError as exc:
            raise InvalidState(f"the saved {algo} state is unusable: {exc}") from None
        digests[algo] = value
    return EngineState(hashed, digests)
