"""Settings, read in one place: explicit values (flags) first, then ``XVIEW2_*``
environment variables, then defaults.

| setting             | flag                  | environment              | default          |
|---------------------|-----------------------|--------------------------|------------------|
| destination         | ``--dest``            | ``XVIEW2_DEST``          | ./data/xview2    |
| connections/file    | ``--connections``     | ``XVIEW2_CONNECTIONS``   | tuned per file   |
| connections, all    | ``--max-connections`` | ``XVIEW2_MAX_CONNECTIONS``| 32              |
| memory budget (MB)  | ``--memory-mb``       | ``XVIEW2_MEMORY_MB``     | 160              |
| catalog files       | ``--catalog``         | ``XVIEW2_CATALOG`` (: )  | built-in only    |
| speed cap (bytes/s) | ``--limit-rate``      | ``XVIEW2_LIMIT_RATE``    | no cap           |
| resume-state copies |                       | ``XVIEW2_STATE_DIR``     | see state_dir()  |
| CA bundle (HTTPS)   | ``--ca-bundle``       | ``XVIEW2_CA_BUNDLE``     | see ca_bundle_setting() |

Each service's own conventions are left to its library: the AWS credential chain and
``AWS_ENDPOINT_URL`` (boto3), and so on.  Errors name the setting as the user gave it
(``--connections`` or ``XVIEW2_CONNECTIONS``), never an internal variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog
from .errors import UsageError

DEFAULT_DEST = "./data/xview2"
DEFAULT_CONNECTIONS = None
"""No fixed count: each file's connections are tuned while it runs."""
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_MEMORY_MB = 160
"""Room for 16 MiB parts on 8 connections plus the reorder window (10 buffers)."""
MIN_MEMORY_MB = 16
MAX_CONNECTIONS_LIMIT = 256
"""More connections than this is a mistake, not a setting."""


@dataclass(frozen=True)
class IntSetting:
    """A whole-number setting: its flag, its variable, its default and its bounds."""

    flag: str
    env: str
    default: int
    minimum: int = 1
    maximum: int | None = None
    why_maximum: str = ""
    """Why the maximum, said in the error (e.g. "this machine's memory")."""

    def resolve(self, value: int | None) -> int:
        found = self.resolve_optional(value)
        return self.default if found is None else found

    def resolve_optional(self, value: int | None) -> int | None:
        """Like :meth:`resolve`, but None when neither the flag nor the variable is set."""
        source = self.flag
        if value is None:
            raw = os.environ.get(self.env)
            if not raw:
                return None
            source = self.env
            try:
                value = int(raw)
            except ValueError:
                raise UsageError(f"{self.env}={raw!r} is not a whole number") from None
        if value < self.minimum:
            raise UsageError(f"{source} must be at least {self.minimum} (got {value})")
        if self.maximum is not None and value > self.maximum:
            why = f", {self.why_maximum}" if self.why_maximum else ""
            raise UsageError(f"{source} must be at most {self.maximum}{why} (got {value})")
        return value


CONNECTIONS = IntSetting("--connections", "XVIEW2_CONNECTIONS", 0, maximum=MAX_CONNECTIONS_LIMIT)
"""Use :meth:`IntSetting.resolve_optional`: unset means tuned per file."""
MAX_CONNECTIONS = IntSetting(
    "--max-connections",
    "XVIEW2_MAX_CONNECTIONS",
    DEFAULT_MAX_CONNECTIONS,
    maximum=MAX_CONNECTIONS_LIMIT,
)


def physical_memory_mb() -> int | None:
    """This machine's memory in MB, when the system says."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1_000_000
    except (ValueError, OSError, AttributeError):
        return None


MEMORY_MB = IntSetting(
    "--memory-mb",
    "XVIEW2_MEMORY_MB",
    DEFAULT_MEMORY_MB,
    MIN_MEMORY_MB,
    maximum=physical_memory_mb(),
    why_maximum="this machine's memory",
)
MAX_PART_SIZE_MB = 5 * 1024
"""The largest part S3 accepts (5 GiB), in MiB: a larger part is a mistake everywhere."""
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmg]?)(?:i?b)?(?:/s)?\s*$", re.I)
_RATE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_rate(text: str, source: str = "--limit-rate") -> int:
    """Bytes per second from ``10M``, ``500K``, ``1.5M``, ``2G`` or ``65536`` (K, M, G
    are 1024-based, as in curl and wget; a trailing ``B``/``iB`` and ``/s`` are allowed);
    0 means no cap."""
    match = _RATE.match(text)
    if not match:
        raise UsageError(
            f"{source}={text!r} is not a rate",
            hint="give bytes per second, e.g. 500K, 10M or 1.5M (0: no cap)",
        )
    return int(float(match.group(1)) * _RATE_UNITS[match.group(2).lower()])


def limit_rate_setting(value: str | int | None) -> int | None:
    """The speed cap in bytes per second: ``value`` (``--limit-rate``), else
    ``XVIEW2_LIMIT_RATE``, else none; 0 also means none."""
    if value is None:
        raw = os.environ.get("XVIEW2_LIMIT_RATE")
        rate = parse_rate(raw, "XVIEW2_LIMIT_RATE") if raw else 0
    elif isinstance(value, int):
        if value < 0:
            raise UsageError(f"--limit-rate must not be negative (got {value})")
        rate = value
    else:
        rate = parse_rate(value)
    return rate or None


def dest_setting(dest: str | os.PathLike[str] | None) -> str:
    """The destination: ``dest``, else ``XVIEW2_DEST``, else ``./data/xview2``.

    A URL that names no destination (``s3://`` without a bucket, another scheme) is a
    :class:`~xview2_ingest.errors.UsageError` naming ``--dest`` or ``XVIEW2_DEST``.
    """
    if dest is not None:
        text = os.fspath(dest)
        if not text:
            raise UsageError("--dest is empty", hint=DEST_HINT)
        check_dest_url(text, "--dest")
        return text
    text = os.environ.get("XVIEW2_DEST") or DEFAULT_DEST
    check_dest_url(text, "XVIEW2_DEST")
    return text


DEST_HINT = "give a folder, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"


def check_dest_url(dest: str, source: str) -> None:
    """Refuse a destination URL that cannot name a store; folders pass unchanged."""
    scheme, sep, rest = dest.partition("://")
    if not sep:
        return
    if scheme == "https" and ".blob.core.windows.net/" in dest:
        scheme, rest = "az", rest.partition("/")[2]
    elif scheme in ("abfs", "abfss"):
        scheme, rest = "az", rest.partition("@")[0] + "/" + rest.partition("/")[2]
    if scheme not in ("s3", "gs", "az"):
        raise UsageError(f"{source} {dest!r}: unsupported kind of destination", hint=DEST_HINT)
    bucket = rest.partition("/")[0]
    word = "container" if scheme == "az" else "bucket"
    if not bucket:
        raise UsageError(f"{source} {dest!r} names no {word}", hint=f"use {scheme}://{word}/prefix")
    if scheme == "s3" and not S3_BUCKET.fullmatch(bucket):
        raise UsageError(
            f"{source} {dest!r}: {bucket!r} is not a valid bucket name",
            hint="bucket names have 3 to 63 lowercase letters, digits, dots or hyphens",
        )


def catalog_files(files: Sequence[str | os.PathLike[str]] = ()) -> list[str]:
    """Catalog files: those given, else the ``:``-separated ``XVIEW2_CATALOG``."""
    if files:
        return [os.fspath(f) for f in files]
    env = os.environ.get("XVIEW2_CATALOG", "")
    return [p for p in env.split(os.pathsep) if p]


def resolve_catalog(
    catalog: Catalog | None = None, files: Sequence[str | os.PathLike[str]] = ()
) -> Catalog:
    """The one catalog assembly every command uses: ``catalog`` (default: the built-in
    one) extended by the catalog files (``--catalog``, else ``XVIEW2_CATALOG``).

    A file that cannot be read or parsed is a :class:`~xview2_ingest.errors.CatalogError`
    (exit 2), whichever command asked.
    """
    base = catalog if catalog is not None else Catalog()
    for path in catalog_files(files):
        base = base.with_file(path)
    return base


def state_dir() -> Path:
    """Where local copies of remote resume state live: ``XVIEW2_STATE_DIR``, else
    ``$XDG_STATE_HOME/xview2-ingest``, else ``~/.local/state/xview2-ingest``."""
    explicit = os.environ.get("XVIEW2_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join("~", ".local", "state")
    return Path(base).expanduser() / "xview2-ingest"


CA_BUNDLE_VARIABLES = ("XVIEW2_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


def ca_bundle_setting(value: str | os.PathLike[str] | None = None) -> str | None:
    """The CA certificates (PEM) that HTTPS links are verified against: ``value``
    (``--ca-bundle``), else the first of ``XVIEW2_CA_BUNDLE``, ``REQUESTS_CA_BUNDLE``,
    ``CURL_CA_BUNDLE``, ``SSL_CERT_FILE`` that is set (as requests and curl users
    expect), else None: the system's store (which OpenSSL also points ``SSL_CERT_DIR``
    at).  A file that does not exist is a usage error naming where it came from."""
    source, path = "--ca-bundle", os.fspath(value) if value is not None else ""
    if not path:
        for env in CA_BUNDLE_VARIABLES:
            if os.environ.get(env):
                source, path = env, os.environ[env]
                break
    if not path:
        return None
    if not Path(path).expanduser().is_file():
        raise UsageError(
            f"{source}={path}: no such file",
            hint="point it at a PEM file of CA certificates, e.g. --ca-bundle ca.pem",
        )
    return str(Path(path).expanduser())
