"""What a failed operation on a local disk means, said once for every module that writes
files here (the local store, the extractor's writer of plain files)."""

from __future__ import annotations

import errno

from ..errors import DestinationError


def os_error(exc: OSError, name: str, action: str) -> DestinationError:
    """A :class:`DestinationError` saying what failed on a local disk, and what to do."""
    if exc.errno == errno.ENOSPC:
        reason = "the disk is full"
        hint = "free space or choose another destination, then run again; finished work is kept"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason, hint = "permission denied", "choose a destination you can write to"
    else:
        reason, hint = exc.strerror or str(exc), "check the destination folder"
    return DestinationError(f"cannot {action}: {reason}", file=name, hint=hint)


__all__ = ["os_error"]
