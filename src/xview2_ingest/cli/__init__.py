"""The ``xview2`` command: parsing, progress drawing, errors to exit codes.

Everything else lives in the library; this package only translates.  It imports the
library through its public API alone (the package root, ``errors``, ``events``,
``reports`` and ``settings``), and no ``argparse.Namespace`` leaves it.

* :mod:`.app` -- the parser, ``main``, errors to exit codes;
* :mod:`.ui` -- the progress view, messages, failure lists, the hidden prompt;
* :mod:`.transfer` -- ``download``, ``status``, ``clean``;
* :mod:`.dataset` -- ``extract``, ``index``, ``stats``, ``ingest``, ``demo``.
"""

from __future__ import annotations

from .app import main

__all__ = ["main"]
