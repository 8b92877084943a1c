"""The folder layouts :func:`.make_layout` can build, named without importing it."""

from __future__ import annotations

from typing import Literal

LayoutKind = Literal["torchgeo", "images-masks"]
KINDS: tuple[LayoutKind, ...] = ("torchgeo", "images-masks")
