"""Names of a package loaded on first use (PEP 562), so a command pays at start only for
what it runs.

Every command starts by importing ``xview2_ingest``; the index and preparation stages
bring pyarrow and numpy, the demo brings werkzeug: a quarter of a second or more that a
download, whose whole job may take a few seconds, has no use for.  A package lists such
names with the module that defines each, and the first access imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that loads ``name`` from the module
    ``table[name]`` (relative to ``package``) on first access, then keeps it."""

    def __getattr__(name: str) -> Any:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where, package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
