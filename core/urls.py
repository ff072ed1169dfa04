"""URLs as players may see them: no ``user:password@``, no query string or fragment (an
API key passed as ``?key=…``), so an error message never shows a secret."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_USERINFO = re.compile(r"//[^/@\s]*@")


def public_url(url: str) -> str:
    """``url`` without its credentials, query and fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # e.g. a port that is not a number: at least no "user:password@"
        return _USERINFO.sub("//", url).split("?", 1)[0]
    if not parts.netloc:  # not a URL urllib understands: the same
        return _USERINFO.sub("//", url).split("?", 1)[0]
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
