"""Resumable digests agree with hashlib, across a save and restore."""

from __future__ import annotations

import hashlib
import os

import pytest

from xview2_ingest.transfer.digest import Digest


@pytest.mark.parametrize("algorithm", ["sha1", "md5"])
def test_state_survives_a_round_trip(algorithm: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    first = Digest(algorithm)
    first.update(memoryview(bytearray(data[:1_000_003])))
    saved = first.state()
    assert saved is not None
    resumed = Digest(algorithm, saved)
    resumed.update(data[1_000_003:])
    assert resumed.hexdigest() == hashlib.new(algorithm, data).hexdigest()
    # hexdigest does not disturb the running state
    assert resumed.hexdigest() == hashlib.new(algorithm, data).hexdigest()


def test_empty_input() -> None:
    assert Digest("sha1").hexdigest() == hashlib.sha1(b"").hexdigest()
