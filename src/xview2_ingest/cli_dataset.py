"""The dataset commands of ``xview2``: extract, index, stats, ingest, demo."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_dataset_commands(
    sub: Any,
    add_common: Callable[[argparse.ArgumentParser], None],
    add_download_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register the dataset subcommands on ``sub``."""


DATASET_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
