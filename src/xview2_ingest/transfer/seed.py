"""Resume state that did not come from a download: a partial file adopted by ``import``.

A partial browser download holds the first bytes of an archive.  ``import`` writes the
whole parts it covers into the destination's upload, exactly as the engine would have,
and checkpoints the engine's own resume state: the running digest after those parts and
how many parts are hashed.  The next ``download`` then fetches only the parts after them
and the SHA-1 of the whole file is still checked at the end, over the imported bytes too.

What the import cannot know is the server's identity of the file (ETag, Last-Modified):
the state carries :func:`seed_identity` instead, which :func:`same_file` accepts for any
server copy of the same size.  The first checkpoint of that download replaces it with the
server's own identity.
"""

from __future__ import annotations

from typing import Any

from .http import Remote

SEEDED = "import"


def seed_identity(size: int) -> dict[str, Any]:
    """The identity a seeded resume state carries: the size, and where it came from."""
    return {"size": size, "seeded": SEEDED}


def same_file(saved: object, remote: Remote) -> bool:
    """Whether resume state saved with identity ``saved`` fits the file the server offers
    now: the same identity, or a seed of the same size."""
    if saved == remote.identity():
        return True
    return (
        isinstance(saved, dict)
        and saved.get("seeded") == SEEDED
        and remote.size is not None
        and saved.get("size") == remote.size
    )


def seeded_state(size: int, hashed: int, digests: dict[str, str | None]) -> dict[str, Any]:
    """The engine's checkpoint (see ``FileTransfer._checkpoint``) after ``hashed`` parts."""
    return {"identity": seed_identity(size), "hashed": hashed, "digests": digests}
