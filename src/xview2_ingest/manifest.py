"""``DEST/manifest.json``: what is published at a destination and how it was verified.

Per file: name, size, digests, whether they matched a reference (``verified``), when, and
the source URL with its query string removed (never the signature).  ``verify`` marks a
file whose bytes no longer match with ``"corrupt": true``, the digests it found
(``corrupt_digests``) and when (``corrupt_at``); ``download`` fetches such a file again.
``extract`` marks an archive the same way when its SHA-1 no longer matches, and one it
deleted after a verified extraction with ``"removed": true`` and ``removed_at``:
``status`` shows it as extracted and ``download`` does not fetch it again.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from .stores import Store

MANIFEST = "manifest.json"
VERSION = 1


class Manifest:
    """Read-modify-write of the manifest, serialised by a lock (one writer per run)."""

    def __init__(self, store: Store):
        self._store = store
        self._lock = threading.Lock()
        raw = store.read_bytes(MANIFEST)
        data: dict[str, Any] = {}
        if raw:
            try:
                loaded = json.loads(raw)
                data = loaded if isinstance(loaded, dict) else {}
            except ValueError:
                data = {}
        self._files: dict[str, dict[str, Any]] = dict(data.get("files", {}))

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._files.items()}

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._files.get(name)
            return dict(entry) if entry else None

    def is_published(self, name: str) -> bool:
        """In the manifest and present at the destination with the recorded size."""
        entry = self.get(name)
        return bool(entry) and self._store.size_of(name) == entry["size"]  # type: ignore[index]

    def record(
        self,
        name: str,
        *,
        size: int,
        digests: dict[str, str],
        verified: bool,
        source: str | None,
        **extra: Any,
    ) -> None:
        entry = {
            "name": name,
            "size": size,
            **digests,
            "verified": verified,
            "verified_at": _now(),
            "source": source,
            **extra,
        }
        with self._lock:
            self._files[name] = entry
            self._save()

    def is_corrupt(self, name: str) -> bool:
        """Whether ``verify`` found the published bytes of ``name`` not to match."""
        entry = self.get(name)
        return bool(entry and entry.get("corrupt"))

    def mark_corrupt(self, name: str, actual: dict[str, str]) -> None:
        """Record that the bytes of ``name`` hash to ``actual``, not what was verified."""
        self._update(name, {"corrupt": True, "corrupt_digests": actual, "corrupt_at": _now()})

    def mark_checked(self, name: str) -> None:
        """Record that the bytes of ``name`` were hashed again and matched."""
        self._update(
            name, {"checked_at": _now()}, drop=("corrupt", "corrupt_digests", "corrupt_at")
        )

    def is_removed(self, name: str) -> bool:
        """Whether ``extract --remove-archives`` deleted ``name`` after verifying it."""
        entry = self.get(name)
        return bool(entry and entry.get("removed"))

    def mark_removed(self, name: str) -> None:
        """Record that ``name`` was deleted after its verified extraction."""
        self._update(name, {"removed": True, "removed_at": _now()})

    def _update(self, name: str, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> None:
        with self._lock:
            entry = self._files.get(name)
            if entry is None:
                return
            for key in drop:
                entry.pop(key, None)
            entry.update(changes)
            self._save()

    def forget(self, name: str) -> None:
        with self._lock:
            if self._files.pop(name, None) is not None:
                self._save()

    def _save(self) -> None:
        body = {"version": VERSION, "files": dict(sorted(self._files.items()))}
        self._store.write_bytes(MANIFEST, json.dumps(body, indent=2).encode() + b"\n")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
