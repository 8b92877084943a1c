"""Which HTTP proxy a request goes through, read from the environment the way curl does.

``https_proxy`` for https URLs, ``http_proxy`` for http ones, ``all_proxy`` for both when
the specific one is unset; each also in upper case (lower case wins when both are set,
and upper-case ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set, as a CGI
program must).  ``no_proxy`` / ``NO_PROXY`` lists hosts reached directly: ``*`` for all,
a name (which covers its subdomains, with or without a leading dot), an IP address or a
CIDR block, each optionally with ``:port``.  A proxy given without a scheme is
``http://``; ``user:password@`` in it is sent as proxy Basic authentication.

urllib3's ``PoolManager`` reads none of these variables, hence this module.  SOCKS
proxies are refused with a usage error rather than silently bypassed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..errors import UsageError


@dataclass(frozen=True)
class Proxy:
    """One proxy: its URL without credentials, those credentials, and where it was set."""

    url: str
    auth: str | None = field(repr=False)
    variable: str


def _get(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The value of ``name`` (lower case first, then upper case) and the variable used."""
    for var in (name, name.upper()):
        if var == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue  # CGI: a request header can set HTTP_PROXY ("httpoxy")
        value = env.get(var, "").strip()
        if value:
            return value, var
    return None


def _parse_proxy(value: str, variable: str) -> Proxy:
    text = value if "://" in value else f"http://{value}"
    shown = f"{variable}={_without_auth(text)}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise UsageError(
            f"malformed proxy in {shown}: {exc}", hint=f"fix or unset {variable}"
        ) from None
    if parts.scheme.startswith("socks"):
        raise UsageError(
            f"SOCKS proxies are not supported ({shown})",
            hint=f"use an http:// proxy in {variable}, or unset {variable}",
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"malformed proxy in {shown}", hint=f"use http://HOST:PORT in {variable}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"{parts.scheme}://{host}" + (f":{port}" if port else "")
    auth = None
    if parts.username is not None:
        auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return Proxy(url, auth, variable)


def _without_auth(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` says ``host:port`` is reached directly (curl's rules)."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.replace(" ", ",").split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port = None
        if entry.startswith("["):  # [v6]:port
            inner, _, rest = entry[1:].partition("]")
            entry, entry_port = inner, rest.lstrip(":") or None
        elif entry.count(":") == 1:
            entry, entry_port = entry.split(":")
        if entry_port is not None and entry_port != str(port):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


class ProxySettings:
    """The proxy environment, read once (a run uses one consistent setting)."""

    def __init__(self, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self._proxies: dict[str, Proxy] = {}
        for scheme in ("http", "https", "all"):
            found = _get(env, f"{scheme}_proxy")
            if found is not None:
                self._proxies[scheme] = _parse_proxy(*found)
        no_proxy = _get(env, "no_proxy")
        self._no_proxy = no_proxy[0] if no_proxy else ""

    def for_url(self, url: str) -> Proxy | None:
        """The proxy for ``url``, or None for a direct connection."""
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
        if proxy is None or not parts.hostname:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self._no_proxy and _bypassed(parts.hostname, port, self._no_proxy):
            return None
        return proxy
