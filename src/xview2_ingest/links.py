"""Links in every form users have them, the file each one names, its deadline, redaction.

Accepted forms (auto-detected, never executed):

* URLs as command-line arguments;
* a text file, one URL per line, or ``name=URL`` lines; blank lines and ``#`` comments
  are ignored;
* a JSON object ``{"label": "https://..."}``;
* a Python module defining dicts of strings, e.g. ``challenge_links = {"xview2_train":
  "https://..."}`` -- parsed with :mod:`ast`, never imported or run.

A link is identified by the file name in its URL path (the last segment); labels are kept
only for messages.  The signed query string is a secret: :func:`redact` removes it, and
:class:`Link`'s ``repr`` and ``str`` never show it.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from .errors import LinksFileError

log = logging.getLogger(__name__)

_NAME_EQ_URL = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*(\S+://\S+)\s*$")


@dataclass(frozen=True)
class Link:
    """One download link.  ``url`` holds the secret signature: never print it."""

    name: str
    url: str = field(repr=False)
    label: str | None = None
    origin: str = "argument"

    @property
    def display(self) -> str:
        """The URL without its query string: safe to print, log and store."""
        return redact(self.url)

    @property
    def expires_at(self) -> float | None:
        """The link's deadline as a Unix time, when the URL carries one."""
        return link_deadline(self.url)

    def seconds_left(self, now: float | None = None) -> float | None:
        deadline = self.expires_at
        if deadline is None:
            return None
        return deadline - (time.time() if now is None else now)

    def __str__(self) -> str:
        return f"{self.name} <{self.display}>"


def redact(url: str) -> str:
    """Drop the query string, fragment and any user:password from a URL."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def file_name_of(url: str) -> str:
    """The file a URL names: the last segment of its path, percent-decoded."""
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def _parse_http_date(text: str) -> float | None:
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def link_deadline(url: str) -> float | None:
    """Read the expiry time a signed URL carries, as a Unix time.

    CloudFront ``Expires``; S3 presigned ``X-Amz-Date`` + ``X-Amz-Expires``; GCS
    ``X-Goog-Date`` + ``X-Goog-Expires``; Azure SAS ``se``.  None when there is none.
    """
    query = {k.lower(): v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    try:
        if "expires" in query:
            return float(int(query["expires"]))
        for prefix in ("x-amz", "x-goog"):
            if f"{prefix}-date" in query and f"{prefix}-expires" in query:
                start = _parse_http_date(query[f"{prefix}-date"])
                if start is not None:
                    return start + int(query[f"{prefix}-expires"])
        if "se" in query and "sig" in query:
            return _parse_http_date(query["se"])
    except ValueError:
        log.debug("unreadable expiry in link to %s", redact(url))
    return None


def _check_url(url: str, where: str) -> str:
    url = url.strip().strip("'\"")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise LinksFileError(
            f"not an http(s) URL: {redact(url) if parts.netloc else url[:60]!r}",
            file=where,
            hint="each link must start with https:// or http://",
        )
    if not file_name_of(url):
        raise LinksFileError(
            f"URL {redact(url)} names no file", file=where, hint="the path must end in a file name"
        )
    return url


def _from_mapping(mapping: object, origin: str) -> list[tuple[str | None, str, str]]:
    if not isinstance(mapping, dict) or not mapping:
        raise LinksFileError("expected a non-empty object of name -> URL", file=origin)
    out: list[tuple[str | None, str, str]] = []
    for key, value in mapping.items():
        if not isinstance(value, str):
            raise LinksFileError(f"the value of {key!r} is not a URL string", file=origin)
        out.append((str(key), value, f"{origin} [{key}]"))
    return out


def _python_dicts(text: str, origin: str) -> list[tuple[str | None, str, str]] | None:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    found: list[tuple[str | None, str, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and isinstance(key.value, str)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and "://" in value.value
            ):
                found.append((key.value, value.value, f"{origin}:{value.lineno} [{key.value}]"))
    return found or None


def parse_links_text(text: str, origin: str = "<links>") -> list[Link]:
    """Parse any supported links format; raise :class:`LinksFileError` with the place."""
    stripped = text.strip()
    entries: list[tuple[str | None, str, str]]
    if not stripped:
        raise LinksFileError("no links found", file=origin, hint="put one URL per line")
    if stripped.startswith("{"):
        try:
            entries = _from_mapping(json.loads(stripped), origin)
        except json.JSONDecodeError as exc:
            py = _python_dicts(text, origin)
            if py is None:
                raise LinksFileError(
                    f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
                    file=origin,
                ) from None
            entries = py
    else:
        py = _python_dicts(text, origin)
        entries = py if py is not None else _lines(text, origin)
    return _build(entries)


def _lines(text: str, origin: str) -> list[tuple[str | None, str, str]]:
    out: list[tuple[str | None, str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{origin}:{number}"
        match = _NAME_EQ_URL.match(line)
        if match:
            out.append((match.group(1), match.group(2), where))
        elif " " in line or "\t" in line:
            raise LinksFileError(
                "expected one URL or name=URL per line", file=where, hint="remove the extra text"
            )
        else:
            out.append((None, line, where))
    if not out:
        raise LinksFileError("no links found", file=origin, hint="put one URL per line")
    return out


def _build(entries: Iterable[tuple[str | None, str, str]]) -> list[Link]:
    links: dict[str, Link] = {}
    for label, url, where in entries:
        url = _check_url(url, where)
        link = Link(name=file_name_of(url), url=url, label=label, origin=where)
        previous = links.get(link.name)
        if previous is not None and previous.url != link.url:
            raise LinksFileError(
                f"{link.name} is given twice ({previous.origin} and {where})",
                file=where,
                hint="keep one link per file",
            )
        links[link.name] = link
    return list(links.values())


def read_links(
    urls: Sequence[str] = (), links_file: str | Path | None = None, stdin_text: str | None = None
) -> list[Link]:
    """Gather links from arguments and a links file (``-`` reads ``stdin_text``)."""
    entries: list[Link] = []
    if urls:
        entries += _build((None, url, f"argument {i}") for i, url in enumerate(urls, 1))
    if links_file is not None:
        if str(links_file) == "-":
            text, origin = stdin_text or "", "<stdin>"
        else:
            path = Path(links_file)
            try:
                text = path.read_text(encoding="utf-8-sig")
            except OSError as exc:
                raise LinksFileError(
                    f"cannot read links file: {exc.strerror}", file=str(path)
                ) from None
            except UnicodeDecodeError:
                raise LinksFileError("links file is not UTF-8 text", file=str(path)) from None
            origin = str(path)
        entries += parse_links_text(text, origin)
    return _build((link.label, link.url, link.origin) for link in entries)
