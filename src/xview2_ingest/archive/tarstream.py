"""A forward-only reader of tar streams: one pass, no seeking, no temporary files.

Extraction and ``index --from-archives`` read archives only through :class:`TarStream`
(over :func:`.decode.open_decoded`), so a hostile archive meets the same limits in both.

The tar layer is the standard library's :mod:`tarfile` in stream mode (``mode="r|"`` over
the decoded bytes, members in order with :meth:`~tarfile.TarFile.next`, data through
:meth:`~tarfile.TarFile.extractfile`): it parses the headers -- ustar (with its name
prefix), GNU (long names and links, base-256 numbers, sparse maps) and pax (extended and
global records) -- so no header format is written by hand here.  Only the parsing is taken
from it: :mod:`tarfile` extracts nothing and its extraction filters (PEP 706) are not
used.  Which members may be written is decided by :mod:`xview2_ingest.extract.safety` with
rules of our own, so that they are the same on every Python >= 3.11 (the filters and their
defaults differ between versions) and apply to object stores too, where :mod:`tarfile`
has no say.

Around :mod:`tarfile` this module adds what damaged and hostile archives need, through its
documented ``tarinfo`` hook (:class:`_Header`) and the file object it reads (:class:`_Input`):

* errors.  After the first member, :mod:`tarfile` takes a damaged or truncated header for
  the end of the archive and stops without a word.  Here the end is a zero block or no
  more data where a member header is due, nothing else; every damaged header (checksum,
  numbers, pax records, a long-name or pax header with no member after it), truncated
  member and decoder failure raises :class:`CorruptArchiveError` naming the archive, and
  no :mod:`tarfile` exception escapes;
* memory.  :mod:`tarfile` reads a GNU long name or pax header whole into memory, whatever
  size its header announces (a gzip of a few MB can announce and hold a 1 GB pax header),
  and follows GNU sparse maps as far as they go.  A metadata header announcing more than
  :data:`META_MAX` bytes is refused before its data is read; the headers of one member may
  read :data:`HEADER_READ_MAX` bytes (plus the :data:`READ_SIZE` read under way); global
  pax records may hold :data:`META_MAX` bytes in all; and the list of every member that
  stream mode keeps is emptied as we go;
* time.  Where :mod:`tarfile` skips data itself (sparse files, unknown types) it reads on
  past the end of the stream for as long as the header's size says; :class:`_Input`
  refuses to be read past its end twice.  :data:`META_MAX` is small because on
  interpreters without the fix for CVE-2024-6232 (3.11 before 3.11.10, 3.12 before
  3.12.6) :mod:`tarfile` parses pax records in quadratic time.  (The one difference
  between versions: a malformed pax record is a :class:`CorruptArchiveError` with a
  patched :mod:`tarfile` and is skipped by an unpatched one.)
* names are decoded as UTF-8 (``surrogateescape``, so nothing is lost) and a member whose
  name is not UTF-8 is refused (:class:`UnsafeMemberError`).  :class:`TarMember` is the
  small view of a header the rest of the package uses.

The cost of :mod:`tarfile` over a hand-written parser: its stream reader copies the data
it hands over (it joins its :data:`READ_SIZE` reads, then slices off what is asked for and
keeps the rest), and it builds a few Python objects per header.  :data:`READ_SIZE` is the
compromise between copying less of a read at every header (small members) and fewer reads
and joins per large member.  The figures behind these choices are in
``docs/benchmarks-extract.md`` ("Design notes and measurements").
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, Self, cast

from ..errors import XView2Error
from .errors import CorruptArchiveError, UnsafeMemberError

log = logging.getLogger(__name__)

BLOCK = tarfile.BLOCKSIZE
_ZERO_BLOCK = bytes(BLOCK)
META_MAX = 16 << 10
"""Largest GNU long-name or pax header accepted, and all global pax records together."""
HEADER_READ_MAX = 8 * META_MAX
"""Decoded bytes the headers of one member may read: a long name, a long link, an
extended and a global pax header at their largest, with room to spare."""
READ_SIZE = 128 << 10
"""Size of :mod:`tarfile`'s reads from the decoder (its ``bufsize``)."""

REGULAR_TYPES = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE))
DIR_TYPE = tarfile.DIRTYPE
_META_TYPES = frozenset(
    (
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    )
)
TYPE_NAMES = {
    b"1": "hard link",
    b"2": "symbolic link",
    b"3": "character device",
    b"4": "block device",
    b"6": "fifo",
    b"S": "GNU sparse file",
    b"M": "GNU multi-volume continuation",
    b"V": "GNU volume header",
    b"D": "GNU dump directory",
    b"N": "GNU old long name",
}
_MESSAGES = {  # tarfile's words, ours
    "bad checksum": "bad tar header checksum (not a tar archive?)",
    "empty file": "empty archive",
    "invalid header": "invalid tar header",
    "truncated header": "truncated header",
    "unexpected end of data": "the archive ends in the middle of a member",
}


@dataclass(slots=True)
class TarMember:
    """One header, after long names and pax records were applied."""

    name: str
    type: bytes
    size: int
    mode: int
    mtime: float
    linkname: str
    sparse: bool = False

    @property
    def is_file(self) -> bool:
        return self.type in REGULAR_TYPES

    @property
    def is_dir(self) -> bool:
        return self.type == DIR_TYPE

    def kind(self) -> str:
        if self.sparse:
            return "GNU sparse file"
        return TYPE_NAMES.get(self.type, f"unsupported member type {self.type!r}")


class _BadHeader(Exception):
    """A header that cannot be used; becomes a :class:`CorruptArchiveError`."""


class _End(tarfile.HeaderError):
    """No header where one was expected: no data at all (``empty``) or a zero block.

    The end of the archive when a member header is expected, decided here rather than by
    :mod:`tarfile`; after a long name or pax header, :mod:`tarfile` reports it as a bad
    subsequent header (it is a :class:`tarfile.HeaderError`), which is damage.
    """

    def __init__(self, empty: bool):
        super().__init__("the archive ends where a member header was expected")
        self.empty = empty


class _Input:
    """The decoded stream as :mod:`tarfile` reads it: counted, decoder failures translated,
    bounded while a header is parsed (``allowance``), and read once past its end at most.

    That last rule matters where :mod:`tarfile` skips data itself (the members it does
    not hand over, such as sparse files): its skipping reads on after the end without
    looking, for as long as the size in the header says, however large.
    """

    def __init__(self, fileobj: IO[bytes], corrupt: Callable[[str], CorruptArchiveError]):
        self._f = fileobj
        self._corrupt = corrupt
        self.position = 0
        self.allowance: int | None = None
        self.at_end = False

    def read(self, n: int) -> bytes:
        if self.allowance is not None and self.allowance <= 0:
            raise _BadHeader("metadata headers of one member too long")
        if self.at_end:
            raise self._corrupt(_MESSAGES["unexpected end of data"])
        try:
            data = self._f.read(n)
        except XView2Error:
            raise  # the source's own failure (network, destination), already explained
        except Exception as exc:
            # BadGzipFile, EOFError, zlib.error and the isal/zlib-ng equivalents
            raise self._corrupt(f"unreadable data ({type(exc).__name__}: {exc})") from None
        self.position += len(data)
        if self.allowance is not None:
            self.allowance -= len(data)
        if not data and n > 0:
            self.at_end = True
        return data


class _TarFile(tarfile.TarFile):
    """:class:`tarfile.TarFile` knowing its :class:`_Input`, for :class:`_Header`."""

    members: list[tarfile.TarInfo]  # every member so far (stream mode too), emptied as we go

    def __init__(self, *args: Any, guard: _Input, **kwargs: Any):
        self.guard = guard
        super().__init__(*args, **kwargs)


class _Header(tarfile.TarInfo):
    """:class:`tarfile.TarInfo` (the documented ``tarinfo`` hook) with our rules.

    ``frombuf`` (one header block) decides where the archive ends (:class:`_End`), turns
    a damaged block into :class:`_BadHeader` -- after the first member :mod:`tarfile`
    would take it for the end of the archive -- and refuses a negative size or an
    oversized metadata header before its data is read.  ``fromtarfile`` (a member with
    its long-name and pax headers) bounds what they read and turns what :mod:`tarfile`
    finds wrong in them into :class:`_BadHeader`.  Both exceptions go through
    :meth:`tarfile.TarFile.next` unchanged.
    """

    __slots__ = ()

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        if not buf or buf == _ZERO_BLOCK:
            raise _End(empty=not buf)
        try:
            info = super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as exc:
            raise _BadHeader(_MESSAGES.get(str(exc), f"invalid tar header ({exc})")) from None
        if info.size < 0:
            raise _BadHeader("negative member size")
        if info.type in _META_TYPES and info.size > META_MAX:
            raise _BadHeader(f"oversized metadata header ({info.size:,} bytes)")
        return info

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        guard = cast(_TarFile, tarfile_).guard
        outermost = guard.allowance is None  # long names and pax headers recurse
        if outermost:
            guard.allowance = HEADER_READ_MAX
        try:
            info = super().fromtarfile(tarfile_)
        except _End:
            raise
        except tarfile.HeaderError as exc:  # in a pax or long-name header, or what follows
            raise _BadHeader(f"invalid tar header ({exc})") from None
        finally:
            if outermost:
                guard.allowance = None
        if info.size < 0:  # from a pax "size" record
            raise _BadHeader("negative member size")
        return info


class TarStream:
    """Iterate the members of a tar stream; see the module docstring.

    After :meth:`next_member` returned a regular file, its data may be consumed with
    :meth:`read_data`, :meth:`data_reader` or :meth:`skip_data`; whatever is left is skipped
    by the next call.  Every failure to read is a :class:`CorruptArchiveError` except
    errors of the source itself (already :class:`~xview2_ingest.errors.XView2Error`).
    ``hint`` replaces the default advice of the :class:`CorruptArchiveError` raised here
    (the caller knows what its failure leaves behind).
    """

    def __init__(self, fileobj: IO[bytes], archive: str, *, hint: str | None = None):
        self.archive = archive
        self.hint = hint
        self._in = _Input(fileobj, self._corrupt)
        self._tar: _TarFile | None = None
        self._data: IO[bytes] | None = None
        self._remaining = 0
        self.ended = False

    @property
    def position(self) -> int:
        """Bytes of the tar stream decoded so far (:mod:`tarfile` reads ahead a little)."""
        return self._in.position

    def _corrupt(self, what: str) -> CorruptArchiveError:
        return CorruptArchiveError(
            f"{what} (near byte {self.position:,} of the tar stream)",
            file=self.archive,
            hint=self.hint,
        )

    # -- members -------------------------------------------------------------------------
    def next_member(self) -> TarMember | None:
        """The next member, or None at the end-of-archive marker (or a clean end)."""
        if self.ended:
            return None
        # what is left of the current member's data: tarfile reads past it in next(),
        # in READ_SIZE reads through _Input (no copy handed over, truncation detected)
        self._remaining = 0
        self._data = None
        try:
            if self._tar is None:  # opening reads the first header
                options: dict[str, Any] = {
                    "tarinfo": _Header,
                    "encoding": "utf-8",
                    "errors": "surrogateescape",
                    "guard": self._in,
                }
                self._tar = _TarFile.open(
                    fileobj=cast(IO[bytes], self._in), mode="r|", bufsize=READ_SIZE, **options
                )
            info = self._tar.next()
        except _End as end:
            if end.empty and self._tar is None:
                raise self._corrupt("empty archive") from None
            self.ended = True  # a zero block, or no more data (as GNU tar and tarfile)
            return None
        except XView2Error:
            raise
        except _BadHeader as exc:
            raise self._corrupt(str(exc)) from None
        except tarfile.TarError as exc:
            raise self._corrupt(_MESSAGES.get(str(exc), f"invalid tar data ({exc})")) from None
        except RecursionError:  # tarfile follows metadata headers recursively
            raise self._corrupt("too many chained metadata headers") from None
        except Exception as exc:  # what tarfile's parsers raise on absurd values
            raise self._corrupt(f"invalid tar header ({type(exc).__name__}: {exc})") from None
        self._tar.members.clear()  # stream mode would keep every member
        if self._tar.pax_headers and _size(self._tar.pax_headers) > META_MAX:
            raise self._corrupt(f"global pax records longer than {META_MAX:,} bytes")
        if info is None:  # not expected: the end is ours to decide (_End)
            self.ended = True
            return None
        member = self._member(info)
        if member.is_file:
            self._data = self._tar.extractfile(info)
            self._remaining = member.size
        return member

    def _member(self, info: tarfile.TarInfo) -> TarMember:
        try:
            info.name.encode("utf-8")
        except UnicodeEncodeError:
            shown = _shown(info.name)
            raise UnsafeMemberError(self.archive, shown, "name is not valid UTF-8") from None
        return TarMember(
            info.name,
            info.type,
            info.size,
            info.mode,
            info.mtime,
            _shown(info.linkname),
            sparse=info.sparse is not None
            or any(k.startswith("GNU.sparse.") for k in info.pax_headers),
        )

    # -- member data -----------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        """Up to ``n`` bytes of the current member's data (fewer only at its end)."""
        n = min(n, self._remaining)
        if n <= 0 or self._data is None:
            return b""
        try:
            # read() without a size hands over tarfile's bytes without another copy
            data = self._data.read() if n == self._remaining else self._data.read(n)
        except XView2Error:
            raise
        except tarfile.TarError as exc:
            raise self._corrupt(_MESSAGES.get(str(exc), f"invalid tar data ({exc})")) from None
        if len(data) != n:
            raise self._corrupt(_MESSAGES["unexpected end of data"])
        self._remaining -= n
        return data

    def read_data(self) -> bytes:
        """All the data of the current member, in one piece."""
        return self._read(self._remaining)

    def data_reader(self) -> IO[bytes]:
        """A file object reading the rest of the current member's data, for large members."""
        return cast(IO[bytes], _MemberReader(self))

    def skip_data(self) -> None:
        while self._remaining > 0:
            self._read(1 << 20)

    def drain(self) -> int:
        """Read to the end of the stream (gzip trailer check, whole-file digest); the bytes
        read after the part :mod:`tarfile` had read ahead."""
        self.skip_data()
        total = 0
        while not self._in.at_end and (chunk := self._in.read(1 << 20)):
            total += len(chunk)
        return total


def _size(records: Mapping[str, str]) -> int:
    return sum(len(k) + len(v) for k, v in records.items())


def _shown(text: str) -> str:
    """``text`` with undecodable bytes (surrogate escapes) shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _MemberReader(io.RawIOBase):
    def __init__(self, tar: TarStream):
        self._tar = tar

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._tar._remaining
        return self._tar._read(remaining if size is None or size < 0 else size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
