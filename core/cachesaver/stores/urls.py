"""Store URLs as they may be shown anywhere (errors, logs, ``repr``, the CLI): without secrets (G7).

One rule for every place a store URL is printed. Credentials hide in three parts of a URL:

- the userinfo with a password, ``redis://user:PW@host`` -> ``redis://user:***@host`` (the user
  name stays: it tells which ACL user was meant);
- a userinfo without a password, ``redis://TOKEN@host``: managed services put a token there, so
  the whole userinfo is hidden -> ``redis://***@host``;
- query parameters whose name looks like a credential (``password=``, ``token=``, ``secret=``,
  ``auth=``, ``api_key=``, ...; redis-py accepts ``?password=``) -> ``?password=***``.

The userinfo is everything before the *last* ``@`` ahead of the query, so a password with an
unencoded ``@`` or ``/`` is hidden whole. Anything that is not a URL (a directory path) is
returned unchanged.
"""
from __future__ import annotations

import re
from urllib.parse import unquote_plus

__all__ = ["redact_url", "MASK"]

MASK = "***"

#: Query parameter names that carry credentials (matched anywhere in the name, any case).
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|auth|key|credential|signature|sig$|session", re.I)


def redact_url(url: str) -> str:
    """``url`` with every credential replaced by ``***`` (see the module docstring)."""
    if not isinstance(url, str):
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, query_at)
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        userinfo = f"{user}:{MASK}" if colon else MASK
        rest = f"{userinfo}{rest[at:]}"
    head, qmark, query = rest.partition("?")
    if not qmark:
        return f"{scheme}://{rest}"
    query, hash_, fragment = query.partition("#")
    pieces = []
    for piece in query.split("&"):
        name, eq, _value = piece.partition("=")
        if _SECRET_NAME.search(unquote_plus(name)):
            piece = f"{name}={MASK}" if eq else piece
        pieces.append(piece)
    return f"{scheme}://{head}?{'&'.join(pieces)}{hash_}{fragment}"
