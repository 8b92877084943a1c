"""Reading xView2 archives safely: one reader for extraction and for the label index.

:mod:`.decode` picks the gzip decoder and tells gzip from a plain tar by its first bytes;
:mod:`.tarstream` walks the members in one forward pass with limits on what headers may
make it read, so a damaged or hostile archive is a :class:`CorruptArchiveError` or an
:class:`UnsafeMemberError` naming it, never unbounded memory or time::

    raw = CountingReader(store.open_read(name))
    tar = TarStream(open_decoded(raw, raw.head()), name)
    while (member := tar.next_member()) is not None:
        if member.is_file:
            data = tar.read_data()
"""

from __future__ import annotations

from .decode import DECODER, DECODERS, CountingReader, open_decoded
from .errors import CorruptArchiveError, UnsafeMemberError
from .tarstream import HEADER_READ_MAX, META_MAX, READ_SIZE, TarMember, TarStream

__all__ = [
    "DECODER",
    "DECODERS",
    "HEADER_READ_MAX",
    "META_MAX",
    "READ_SIZE",
    "CorruptArchiveError",
    "CountingReader",
    "TarMember",
    "TarStream",
    "UnsafeMemberError",
    "open_decoded",
]
