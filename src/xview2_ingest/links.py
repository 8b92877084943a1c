"""Links in every form users have them, the file each one names, its deadline, redaction.

Accepted forms (auto-detected, never executed):

* URLs as command-line arguments;
* a text file, one URL per line, or ``name=URL`` lines; blank lines and ``#`` comments
  are ignored;
* a JSON object ``{"label": "https://..."}``;
* a Python module defining dicts of strings, e.g. ``challenge_links = {"xview2_train":
  "https://..."}`` -- parsed with :mod:`ast`, never imported or run.

A link is identified by the file name in its URL path (the last segment, percent-decoded);
labels are kept only for messages.  That name becomes a file or object name at the
destination, so it is checked before any request (:func:`name_problem`): one plain path
component, nothing the tool keeps for itself, at most 255 bytes.  Two different links for
one name (ignoring case, which many file systems ignore too) are refused.

The signed query string is a secret: :func:`redact` removes it, and :class:`Link`'s
``repr`` and ``str`` never show it.  Expiry is judged by the link server's clock once its
``Date`` header showed that this machine's clock is off (:data:`server_clocks`).
"""

from __future__ import annotations

import ast
import json
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from .errors import LinksFileError

log = logging.getLogger(__name__)

_NAME_EQ_URL = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*(\S+://\S+)\s*$")

MAX_NAME_BYTES = 255
"""The longest file name most file systems take (ext4, XFS, APFS, NTFS in UTF-16 units)."""
RESERVED_NAMES = frozenset({"manifest.json", "index"})
"""Names the tool writes at a destination itself (``manifest.json``, the ``index/``
folder); everything under ``.xview2/`` is covered by the rule against a leading dot."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a downloaded file's name at a destination, or None.

    One plain path component: no ``/`` or ``\\`` (after percent-decoding), no NUL or other
    control character, no leading ``.`` (so no ``.``, ``..``, ``.xview2``), not a name the
    tool keeps for itself, at most :data:`MAX_NAME_BYTES` bytes of UTF-8.
    """
    if not name:
        return "the URL path names no file"
    if "/" in name or "\\" in name:
        return "the file name holds a path separator ('/' or '\\', perhaps as %2F or %5C)"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "the file name holds a control character"
    if name.startswith("."):
        return "the file name starts with '.' (hidden names, '.' and '..' are refused)"
    if name.casefold() in RESERVED_NAMES:
        return "xview2 keeps that name for its own files at the destination"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"the file name is {size} bytes long; at most {MAX_NAME_BYTES} are allowed"
    return None


@dataclass(frozen=True)
class Link:
    """One download link.  ``url`` holds the secret signature: never print it."""

    name: str
    url: str = field(repr=False)
    label: str | None = None
    origin: str = "argument"

    def __post_init__(self) -> None:
        problem = name_problem(self.name)
        if problem is not None:
            raise LinksFileError(
                f"refusing the link to {_shown_name(self.name)}: {problem}",
                file=self.origin,
                hint="check the link: its path must end in the archive's file name",
            )

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
        return deadline - (server_clocks.now_for(self.url) if now is None else now)

    def __str__(self) -> str:
        return f"{self.name} <{self.display}>"


def redact(url: str) -> str:
    """Drop the query string, fragment and any user:password from a URL.

    Works on malformed URLs too (a bad port, an unclosed ``[``): the text is cut at the
    first ``?`` or ``#`` and any ``user:password@`` is dropped, so nothing secret is shown.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        cut = re.split(r"[?#]", url, maxsplit=1)[0]
        return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/@]*@", r"\1", cut)


def _shown_name(name: str) -> str:
    """A name safe to print: control characters escaped, very long names shortened."""
    shown = repr(name)
    return shown if len(shown) <= 80 else f"{shown[:60]}...' ({len(name.encode())} bytes)"


def file_name_of(url: str) -> str:
    """The file a URL names: the last segment of its path, percent-decoded.

    Links whose path is not UTF-8 once decoded are refused earlier (:func:`_check_url`):
    their bytes would all become U+FFFD, and two such names could not be told apart.
    """
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


class ServerClocks:
    """How far each link server's clock is from this machine's, from its ``Date`` header.

    Signed links expire by the clock of the server that checks them.  When a server's
    clock and ours differ by more than :attr:`threshold` seconds, deadlines are judged by
    the server's (:meth:`now_for`); within it, by ours (a ``Date`` has one-second steps).
    """

    threshold = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._skew: dict[str, float] = {}
        self._reported: dict[str, float] = {}

    @staticmethod
    def _origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()

    def note(self, url: str, skew: float) -> bool:
        """Record that the server of ``url`` is ``skew`` seconds ahead of us (behind when
        negative).  True when that is news worth reporting: beyond the threshold, and
        first seen or moved by more than the threshold since last reported."""
        origin = self._origin(url)
        with self._lock:
            self._skew[origin] = skew
            if abs(skew) <= self.threshold:
                self._reported.pop(origin, None)
                return False
            last = self._reported.get(origin)
            if last is not None and abs(last - skew) <= self.threshold:
                return False
            self._reported[origin] = skew
            return True

    def skew_for(self, url: str) -> float:
        """The server's clock minus ours, when it exceeds the threshold; else 0."""
        with self._lock:
            skew = self._skew.get(self._origin(url), 0.0)
        return skew if abs(skew) > self.threshold else 0.0

    def now_for(self, url: str) -> float:
        """The time by the clock that decides whether ``url`` has expired."""
        return time.time() + self.skew_for(url)


server_clocks = ServerClocks()
"""The one record of link servers' clocks in this process (see :class:`ServerClocks`)."""


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


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _check_url(url: str, where: str) -> str:
    """``url`` stripped of quotes, if it is a well-formed http(s) URL naming a file."""
    url = url.strip().strip("'\"")
    shown = redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:  # an unclosed [, a port that is not a number or too large
        raise LinksFileError(
            f"malformed URL {shown[:120]!r}: {exc}",
            file=where,
            hint="copy the link again; the host and port part is damaged",
        ) from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = "each link must start with https:// or http://"
        if _is_file(url):
            hint = f"to read links from a file, pass --links {url}"
        raise LinksFileError(f"not an http(s) URL: {shown[:60]!r}", file=where, hint=hint)
    if not host or port == 0:
        raise LinksFileError(
            f"malformed URL {shown[:120]!r}: {'port 0' if host else 'no host name'}",
            file=where,
            hint="copy the link again; the host and port part is damaged",
        )
    try:
        unquote(urlsplit(url).path, errors="strict")
    except UnicodeDecodeError:
        raise LinksFileError(
            f"the file name in {shown} is not UTF-8 once percent-decoded",
            file=where,
            hint="the last part of the link's path must be a plain file name",
        ) from None
    if not file_name_of(url):
        raise LinksFileError(
            f"URL {shown} names no file", file=where, hint="the path must end in a file name"
        )
    return url


def _from_mapping(
    mapping: object, origin: str, text: str = ""
) -> list[tuple[str | None, str, str]]:
    if not isinstance(mapping, dict) or not mapping:
        raise LinksFileError("expected a non-empty object of name -> URL", file=origin)
    out: list[tuple[str | None, str, str]] = []
    for key, value in mapping.items():
        if not isinstance(value, str):
            raise LinksFileError(f"the value of {key!r} is not a URL string", file=origin)
        line = _line_of(text, json.dumps(key, ensure_ascii=False))
        out.append((str(key), value, f"{origin}{line} [{key}]"))
    return out


def _line_of(text: str, needle: str) -> str:
    """``:N`` for the line where ``needle`` first appears in ``text``, else nothing."""
    at = text.find(needle)
    return f":{text.count(chr(10), 0, at) + 1}" if at >= 0 else ""


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
            entries = _from_mapping(json.loads(stripped), origin, text)
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


def _name_key(name: str) -> str:
    """Names that one file system could take for the same file compare equal."""
    return unicodedata.normalize("NFC", name).casefold()


def check_distinct(links: Iterable[Link]) -> list[Link]:
    """``links`` with exact repeats dropped; two different links for one name refused.

    Names are compared ignoring case and Unicode normalization: on macOS and Windows file
    systems ``A.tgz`` and ``a.tgz`` are one file, and two downloads must never share one.
    """
    seen: dict[str, Link] = {}
    for link in links:
        key = _name_key(link.name)
        previous = seen.get(key)
        if previous is None:
            seen[key] = link
        elif previous.url != link.url or previous.name != link.name:
            same = "" if previous.name == link.name else f" (as {_shown_name(previous.name)})"
            raise LinksFileError(
                f"{_shown_name(link.name)} is given twice{same}: {previous.origin} and "
                f"{link.origin}",
                file=link.origin,
                hint="keep one link per file",
            )
    return list(seen.values())


def _build(entries: Iterable[tuple[str | None, str, str]]) -> list[Link]:
    links = []
    for label, url, where in entries:
        url = _check_url(url, where)
        links.append(Link(name=file_name_of(url), url=url, label=label, origin=where))
    return check_distinct(links)


def _shown_path(path: str) -> str:
    """A links-file argument safe to print: a URL given by mistake loses its query."""
    return redact(path) if "://" in path else path


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
            shown = _shown_path(str(links_file))
            try:
                text = path.read_text(encoding="utf-8-sig")
            except OSError as exc:
                looks_like_link = "://" in str(links_file)
                raise LinksFileError(
                    f"cannot read links file: {exc.strerror or exc}",
                    file=shown,
                    hint="that is a link, not a file: pass links as arguments, without --links"
                    if looks_like_link
                    else None,
                ) from None
            except UnicodeDecodeError:
                raise LinksFileError("links file is not UTF-8 text", file=shown) from None
            origin = shown
        entries += parse_links_text(text, origin)
    return _build((link.label, link.url, link.origin) for link in entries)
