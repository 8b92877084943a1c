"""The one archive reader, shared by extraction and ``index --from-archives``: the same
formats, decoders and header limits for both."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from xview2_ingest import extract
from xview2_ingest.archive import (
    DECODER,
    DECODERS,
    CorruptArchiveError,
    CountingReader,
    TarStream,
    decode,
    open_decoded,
)
from xview2_ingest.demo.synth import ARCHIVE_NAMES
from xview2_ingest.index import IMAGES_FILE, build_index
from xview2_ingest.manifest import Manifest
from xview2_ingest.stores import LocalStore

MiB, GiB = 1 << 20, 1 << 30
TRAIN = ARCHIVE_NAMES["train"]
LABEL = "train/labels/socal-fire_00000001_post_disaster.json"


def pax_bomb(pax_size: int = GiB) -> bytes:
    """A gzip of about 1 MB announcing and holding one pax header of ``pax_size`` bytes,
    then a label file: gzip members of 1 MiB of ``a`` each, concatenated (a gzip stream
    may hold many members, and every decoder reads them as one)."""
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type, pax.size = tarfile.XHDTYPE, pax_size
    label = tarfile.TarInfo(LABEL)
    label.size = 2
    chunk = gzip.compress(b"a" * MiB, compresslevel=9)
    assert pax_size % MiB == 0
    return b"".join(
        [
            gzip.compress(pax.tobuf(tarfile.USTAR_FORMAT)),
            chunk * (pax_size // MiB),
            gzip.compress(
                label.tobuf(tarfile.USTAR_FORMAT) + b"{}".ljust(512, b"\0") + bytes(1024)
            ),
        ]
    )


@pytest.fixture(scope="module")
def bomb() -> bytes:
    data = pax_bomb()
    assert len(data) < 2 * MiB
    return data


def publish(dest: Path, name: str, data: bytes) -> LocalStore:
    store = LocalStore(dest)
    store.write_bytes(name, data)
    Manifest(store).record(name, size=len(data), digests={}, verified=True, source=None)
    return store


@pytest.mark.parametrize("decoder", list(DECODERS))
def test_a_pax_bomb_is_refused_before_its_header_is_read(bomb: bytes, decoder: str) -> None:
    raw = CountingReader(io.BytesIO(bomb))
    tar = TarStream(open_decoded(raw, raw.head(), decoder=decoder), TRAIN)
    with pytest.raises(CorruptArchiveError, match=r"oversized metadata header \(1,073,741,824"):
        tar.next_member()
    assert raw.count < 64 * 1024 and tar.position < MiB  # nowhere near the 1 GiB


def test_extract_refuses_a_pax_bomb(tmp_path: Path, bomb: bytes) -> None:
    dest = tmp_path / "dest"
    publish(dest, TRAIN, bomb)
    report = extract([TRAIN], dest)
    result = report.archives[0]
    assert result.status == "failed" and isinstance(result.error, CorruptArchiveError)
    assert result.error.file == TRAIN and "oversized metadata header" in str(result.error)
    assert not (dest / "train").exists()


def test_index_from_archives_refuses_a_pax_bomb(tmp_path: Path, bomb: bytes) -> None:
    publish(tmp_path, TRAIN, bomb)
    with pytest.raises(CorruptArchiveError, match="oversized metadata header") as caught:
        build_index(tmp_path, from_archives=True, workers=1)
    assert caught.value.file == TRAIN and "nothing was indexed" in str(caught.value)
    assert not (tmp_path / IMAGES_FILE).exists()


def test_a_small_pax_header_is_read_by_both(tmp_path: Path) -> None:
    """The same archive with a pax header of 1 MiB less than the limit would be fine: the
    reader refuses the size, not the format (here a small, valid pax header)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(LABEL)
        info.pax_headers = {"comment": "c" * 1000}
        data = b'{"features": {"lng_lat": [], "xy": []}, "metadata": {}}'
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    raw = CountingReader(io.BytesIO(buf.getvalue()))
    tar_stream = TarStream(open_decoded(raw, raw.head()), TRAIN)
    found = tar_stream.next_member()
    assert found is not None and found.name == LABEL and tar_stream.read_data() == data


def test_plain_tar_and_every_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("a.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    plain = buf.getvalue()
    assert DECODER in DECODERS and "zlib" in DECODERS
    for name in DECODERS:
        monkeypatch.setattr(decode, "DECODER", name)
        for data in (plain, gzip.compress(plain)):
            raw = CountingReader(io.BytesIO(data))
            tar_stream = TarStream(open_decoded(raw, raw.head()), "t")
            found = tar_stream.next_member()
            assert found is not None and tar_stream.read_data() == b"abc"
            assert tar_stream.next_member() is None
            tar_stream.drain()
            assert raw.count == len(data)
