"""Printing URLs without their secrets.

Relay URLs often carry credentials or an API key (``https://user:pw@host``,
``/v3/<key>``); anything shown to an operator, logged or written to the audit log goes
through :func:`redact_url`. No dependencies, so every room may use it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` safe to print: no credentials, no query, no key-like path segments.

    The userinfo becomes ``***@``, a query ``?***``, a fragment ``#***``, and every path
    segment of 20 characters or more (``/v3/<key>`` of Infura, Alchemy and the like)
    ``***``. A URL that does not even parse is printed as ``***``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    path = "/".join("***" if len(seg) >= 20 else seg for seg in parts.path.split("/"))
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            path,
            "***" if parts.query else "",
            "***" if parts.fragment else "",
        )
    )
