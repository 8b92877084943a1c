"""HTTPS: which CA certificates a link is verified against, and what a failure means.

A certificate that does not verify is not a transient network fault: retrying it eight
times with backoff only hides it.  :func:`tls_failure` turns urllib3's ``SSLError`` into
a :class:`~xview2_ingest.errors.LinkError` that names the host, says why OpenSSL refused
it and how to trust a private CA (``--ca-bundle`` or ``XVIEW2_CA_BUNDLE``).  Other TLS
errors (a reset mid-handshake, a record cut short) stay transient.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from ..errors import LinkError
from ..links import Link


def pool_options(ca_bundle: str | None) -> dict[str, Any]:
    """Keyword arguments for urllib3's pool manager: verify against ``ca_bundle`` when
    given, else the system's store (OpenSSL's defaults also honour ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR``)."""
    return {"ca_certs": ca_bundle} if ca_bundle else {}


def is_verification_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (urllib3's ``SSLError`` or what it wraps) is a refused certificate."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        if any(isinstance(a, ssl.SSLCertVerificationError) for a in current.args):
            return True
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def tls_failure(link: Link, exc: BaseException, ca_bundle: str | None) -> LinkError:
    """The error for a certificate that did not verify, with the way to fix it."""
    host = urlsplit(link.url).hostname or "the server"
    reason = _reason(exc)
    against = f"the CA bundle {ca_bundle}" if ca_bundle else "the system's CA certificates"
    return LinkError(
        f"the HTTPS certificate of {host} did not verify against {against}: {reason}",
        file=link.name,
        hint="if the server uses a private CA, pass its certificate: "
        "xview2 download --ca-bundle CA.pem ... (or set XVIEW2_CA_BUNDLE=CA.pem)",
    )


def _reason(exc: BaseException) -> str:
    current: BaseException | None = exc
    while current is not None:
        for candidate in (current, *current.args):
            if isinstance(candidate, ssl.SSLCertVerificationError):
                return str(candidate.verify_message or candidate.reason or candidate)
        current = current.__cause__ or current.__context__
    return "certificate verify failed"
