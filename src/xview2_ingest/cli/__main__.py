"""``python -m xview2_ingest.cli``: the ``xview2`` command."""

import sys

from .app import main

sys.exit(main())
