"""Which members may be written: regular files and folders with plain relative names.

The rules follow PEP 706's ``data`` filter, implemented here so they are the same on every
Python >= 3.11 (and for object stores, where :mod:`tarfile` has no say), and stricter
where the data filter repairs instead of refusing:

* types: regular files and folders only.  Symbolic and hard links (whatever their target),
  character and block devices, fifos, GNU sparse/volume/multi-volume members and unknown
  types are refused (the data filter refuses special files and unknown types, and
  accepts links that stay inside; there is no link in the xView2 archives, so none is
  accepted here);
* names: a leading ``/`` is refused (the data filter strips it), as is any ``..``
  component anywhere (the data filter accepts ``a/../b``), a drive letter or backslash
  (absolute or ambiguous on Windows), a control character (NUL, newline, tab, any
  Unicode ``Cc``: a name with one cannot be shown, listed one per line or recorded in
  the member index), an empty name, and names that are not UTF-8.  ``.`` and empty
  components are dropped (``./train//x`` is ``train/x``), so every accepted name is one
  canonical relative path and can be an S3 key as it is;
* the destination's own files are reserved: nothing may be written under ``.xview2/``
  or ``.xview2-staging/`` (where object stores hold members until the archive is
  verified) nor over ``manifest.json`` or a downloaded archive;
* permissions as in the data filter: ``mode & 0o755``, the execute bits cleared unless the
  owner may execute, and owner read/write always; ownership is ignored; folder modes are
  ignored.

The data filter also resolves symbolic links already present at the destination and
refuses a member that would land outside it through one; the local writer does the
same for every folder it creates or enters (:mod:`.sinks`).  Object stores have no links.

Validation happens member by member, before any byte of that member is written: a
streaming archive cannot be scanned in advance without reading (and for S3, downloading
and decompressing) it twice, which would double the cost of every extraction to defend
against archives that are refused anyway.  A refused archive therefore may have had
earlier, safe members written inside the destination; the extractor removes the files it
wrote in that run and records nothing, so the net effect is a refusal.
"""

from __future__ import annotations

import re
from collections.abc import Container

from ..archive.tarstream import TarMember
from .errors import UnsafeMemberError

_DRIVE = re.compile(r"^[A-Za-z]:")
RESERVED_DIR = ".xview2"
STAGING_DIR = ".xview2-staging"
"""Members of an archive not yet verified, on object stores (:mod:`.sinks`)."""


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
"""Unicode category ``Cc``: C0 controls, DEL and C1 controls."""


def _control_character(name: str) -> str | None:
    found = _CONTROL.search(name)
    return f"control character {found.group()!r} in the name" if found else None


def data_mode(mode: int) -> int:
    """The permission bits a regular file gets (PEP 706 ``data`` filter)."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def safe_name(archive: str, member: TarMember, reserved: Container[str] = ()) -> str | None:
    """The canonical relative name of ``member``, or None for the archive's root folder.

    Raises :class:`UnsafeMemberError` (archive, member, reason) for anything else than a
    regular file or folder with a plain relative name inside the destination.
    """
    raw = member.name

    def refuse(reason: str) -> UnsafeMemberError:
        return UnsafeMemberError(archive, raw, reason)

    if not (member.is_file or member.is_dir) or member.sparse:
        kind = member.kind()
        if member.type in (b"1", b"2"):
            raise refuse(f"{kind} to {member.linkname!r}; links are not extracted")
        raise refuse(f"{kind}; only regular files and folders are extracted")
    if not raw:
        raise refuse("empty name")
    if "\0" in raw:
        raise refuse("NUL character in the name")
    control = _control_character(raw)
    if control:
        raise refuse(control)
    if raw.startswith("/"):
        raise refuse("absolute path")
    if "\\" in raw:
        raise refuse("backslash in the name")
    if _DRIVE.match(raw):
        raise refuse("drive letter in the name")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise refuse("'..' in the path")
    if not parts:
        if member.is_dir:
            return None  # "./": the destination itself
        raise refuse("a file without a name")
    if member.is_file and raw.endswith("/"):
        raise refuse("a regular file with a folder name")
    name = "/".join(parts)
    if parts[0] in (RESERVED_DIR, STAGING_DIR):
        raise refuse(f"inside the destination's {parts[0]} work area")
    if name in reserved:
        raise refuse("would overwrite the manifest or a downloaded archive")
    return name
