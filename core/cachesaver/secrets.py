"""The secret scanner: what must not leave the machine inside a key's canonical request (G7).

A key's canonical request (its "meta", the JSON the key is the SHA-256 of) holds everything that
shapes the output, verbatim. Credentials travel in transport fields (``api_key``, headers, the
user info of ``api_base``...), which never enter keys; but a credential a user put into an
output-shaping field (``extra_body={"authToken": ...}``, a key pasted into a prompt) is part of
the request, so it is keyed and kept in the local store like the rest. It is caught where
samples *leave* the machine (bundles, exports), by detect-secrets (Yelp's maintained scanner)
used as a library with its default plugins and filters, plus a few detectors of our own, written
as detect-secrets plugins (:mod:`cachesaver._secret_plugins`), for shapes it does not know.

How a value is scanned: every *string* leaf, line by line, is given to the plugins as the line
``"<its own dict key>": "<line>"`` (list items use the key of their list), so keyword heuristics
see the immediate name (``password``, ``authToken``, ``passphrase``). Numbers, booleans and
objects are never flagged, whatever their name (``{"token_budget": 100}``, a tool property named
``token`` whose value is a schema). Lines over 4 KiB are scanned in overlapping windows (the cost
stays linear in the text). Encrypted model state sent back in conversations (a thinking block's
``signature``...) is random by design: only the randomness detectors are skipped there.

    find_secrets(meta)                    -> [Finding(path="$.params.extra_body.authToken",
                                                      detector="Credential-named Field")]
    find_secrets(meta, allow=["$.params.extra_body.session_hint"])   not flagged there
    mask_secrets(meta)                    -> a copy with each detected value shown as ``***``

Nothing here returns, logs or puts into a ``repr`` a detected value: a :class:`Finding` holds
the path and the detector's name only, and :class:`Masker` shows how many values it hides.
Scanning makes no network call and changes no global detect-secrets setting: the plugins are
instantiated here, not through its global settings, and its optional verification of secrets
against their providers runs only if a program switches it on in those settings (its CLI does;
this module never does).
"""
from __future__ import annotations

import importlib
import re
import threading
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional
from urllib.parse import urlsplit, urlunsplit

import orjson

__all__ = [
    "Finding",
    "KeyFinding",
    "Masker",
    "find_secrets",
    "find_secrets_in_meta",
    "find_secrets_in_metas",
    "mask_secrets",
    "masker_for",
    "refusal_message",
    "url_without_userinfo",
    "MASK",
]

#: What a detected value is shown as.
MASK = "***"
#: Characters of a token (base64, base64url, JWT, API keys): what masking widens a value over.
_RUN = r"[A-Za-z0-9._~+/=-]*"
_RUN_END = r"(?:[A-Za-z0-9._~+/=-]*[A-Za-z0-9_~+/=-])?"  # a sentence's full stop is not part of it
_URL_WITH_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]*@", re.I)


def url_without_userinfo(value: str) -> str:
    """``https://user:pass@host/v1`` -> ``https://host/v1`` (anything else unchanged)."""
    if not _URL_WITH_USERINFO.match(value):
        return value
    parts = urlsplit(value)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class Finding(NamedTuple):
    """A detected credential: where it is (a JSON path) and which detector saw it; never the value."""

    path: str
    detector: str


class KeyFinding(NamedTuple):
    """A :class:`Finding` in the canonical request of one key."""

    key: str
    path: str
    detector: str


# -- the detectors -----------------------------------------------------------------------------
def _detectors() -> list[Any]:
    """detect-secrets' default plugins (every plugin it ships, as ``detect-secrets scan`` runs
    them) and ours, instantiated once (see :func:`_engine`)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    from ._secret_plugins import CUSTOM_PLUGINS

    native: dict[str, Any] = get_mapping_from_secret_type_to_class()
    plugins: list[Any] = [plugin() for plugin in native.values()]
    return plugins + [cls() for cls in CUSTOM_PLUGINS]


def _filters() -> list[tuple[Callable[..., Any], tuple[str, ...]]]:
    """detect-secrets' default false-positive filters (UUIDs, sequences, templated values...),
    read from a private ``Settings()`` so the maintained list is used and the global one is left
    alone. Filters about files (lock files, binary files...) do not apply to a request.

    A filter that judges the line alone (``secret = get_secret()`` is an indirect reference)
    is applied to the heuristic plugins only (keywords, entropy), as detect-secrets already does
    for its id-string filter: a value in a provider's key format is a key even on a line of
    pasted code such as ``client = OpenAI(api_key="sk-...")``."""
    from detect_secrets.settings import Settings
    from detect_secrets.util.inject import get_injectable_variables

    usable = {"secret", "line", "plugin"}
    out = []
    for path in sorted(Settings().filters):
        module, _, name = path.rpartition(".")
        function = getattr(importlib.import_module(module), name, None)
        if function is None:
            continue
        names = tuple(get_injectable_variables(function))
        if names and set(names) <= usable:
            out.append((function, names))
    return out


class _Engine:
    def __init__(self) -> None:
        from detect_secrets.plugins.base import RegexBasedDetector

        self.plugins = _detectors()
        self.filters = _filters()
        self.by_format = {id(p) for p in self.plugins if isinstance(p, RegexBasedDetector)}

    def line(self, line: str) -> tuple[tuple[str, str], ...]:
        """``(detector, detected value)`` pairs for one line, filtered as detect-secrets does."""
        found = []
        for plugin in self.plugins:
            for secret in plugin.analyze_line(filename="request.json", line=line, line_number=1):
                value = secret.secret_value
                if not value or self._filtered(value, line, plugin):
                    continue
                found.append((plugin.secret_type, value))
        return tuple(found)

    def _filtered(self, secret: str, line: str, plugin: Any) -> bool:
        given = {"secret": secret, "line": line, "plugin": plugin}
        by_format = id(plugin) in self.by_format
        return any(function(**{n: given[n] for n in names}) for function, names in self.filters
                   if not (by_format and names == ("line",)))


_engine_lock = threading.Lock()
_engine_instance: Optional[_Engine] = None


def _engine() -> _Engine:
    global _engine_instance
    if _engine_instance is None:
        with _engine_lock:
            if _engine_instance is None:
                _engine_instance = _Engine()
    return _engine_instance


@lru_cache(maxsize=4096)
def _scan_line(line: str) -> tuple[tuple[str, str], ...]:
    # Requests of one experiment share long instructions and few-shot examples: each distinct
    # line is scanned once per process.
    return _engine().line(line)


#: Detectors that judge by randomness alone (no format, no name).
_ENTROPY_ONLY = frozenset({"Base64 High Entropy String", "Hex High Entropy String"})
#: Content blocks whose named field is model state the provider encrypted or signed, sent back
#: verbatim in multi-turn conversations (Anthropic thinking signatures, redacted thinking,
#: OpenAI reasoning items): random by design, not a credential. Only the entropy detectors are
#: skipped there; key formats, JWTs and keywords are still looked for.
_OPAQUE_FIELDS = {"thinking": "signature", "redacted_thinking": "data", "reasoning": "encrypted_content"}


#: Longer lines are scanned in overlapping windows, so a scan's cost stays linear in the text
#: (some detector regexes are not) and the per-line cache stays small.
_WINDOW, _OVERLAP = 4096, 512


def _lines(text: str) -> Iterator[str]:
    for line in text.splitlines() or [text]:
        line = line.strip()
        if len(line) <= _WINDOW:
            if line:
                yield line
            continue
        for start in range(0, len(line) - _OVERLAP, _WINDOW - _OVERLAP):
            yield line[start:start + _WINDOW]


def _scan_leaf(name: str, text: str, opaque: bool = False) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for line in _lines(text):
        for item in _scan_line(f'"{name}": "{line}"'):
            if item not in found and not (opaque and item[0] in _ENTROPY_ONLY):
                found.append(item)
    return found


# -- paths and the explicit allow --------------------------------------------------------------
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if _IDENT.match(name) else f"{path}[{orjson.dumps(name).decode()}]"


def _allow_matcher(allow: Iterable[str]) -> Callable[[str], bool]:
    """A path is allowed if a pattern matches it or one of its ancestors (allowing an object
    allows what it holds). Patterns are exact paths, where ``*`` stands for any run of
    characters within one path step and ``**`` for anything."""
    if isinstance(allow, str):
        allow = [allow]
    regexes = []
    for pattern in allow:
        if not isinstance(pattern, str) or not pattern.startswith("$"):
            raise ValueError(f"allow: {pattern!r} is not a JSON path; paths start with '$' "
                             "(e.g. $.params.extra_body.session_hint)")
        parts = re.split(r"(\*\*|\*)", pattern)
        body = "".join(".*" if p == "**" else r"[^.\[\]]*" if p == "*" else re.escape(p) for p in parts)
        regexes.append(re.compile(body + r"(?:$|(?=[.\[]))"))
    if not regexes:
        return lambda path: False
    return lambda path: any(r.match(path) for r in regexes)


def _walk(value: Any, path: str, name: str, allowed: Callable[[str], bool], opaque: bool = False):
    """Yield ``(path, name, text, opaque)`` for every string leaf not under an allowed path
    (``opaque``: an encrypted model-state field, see :data:`_OPAQUE_FIELDS`)."""
    if allowed(path):
        return
    if isinstance(value, str):
        yield path, name, value, opaque
    elif isinstance(value, dict):
        block = value.get("type")
        field = _OPAQUE_FIELDS.get(block) if isinstance(block, str) else None
        for key, item in value.items():
            key = str(key)
            yield from _walk(item, _child(path, key), key, allowed, key == field)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", name, allowed, opaque)


# -- the public calls --------------------------------------------------------------------------
def find_secrets(value: Any, *, allow: Iterable[str] = ()) -> list[Finding]:
    """Every credential the scanner sees in the string leaves of the JSON ``value``.

    Returns one :class:`Finding` per (path, detector), in document order; an empty list means
    nothing was flagged. ``allow``: JSON paths or patterns (see :func:`_allow_matcher`) the
    caller vouches for; nothing at or under them is reported. Raises ``ValueError`` for a
    pattern that is not a path.
    """
    allowed = _allow_matcher(allow)
    findings: list[Finding] = []
    for path, name, text, opaque in _walk(value, "$", "", allowed):
        for detector, _secret in _scan_leaf(name, text, opaque):
            finding = Finding(path, detector)
            if finding not in findings:
                findings.append(finding)
    return findings


def _decoded(meta: "bytes | bytearray | memoryview | str") -> Any:
    raw = meta if isinstance(meta, str) else bytes(meta)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Not JSON (written by another tool): scanned as one text, so nothing escapes the scan.
        return raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")


def find_secrets_in_meta(meta: "bytes | str | None", *, allow: Iterable[str] = ()) -> list[Finding]:
    """:func:`find_secrets` of a stored canonical request (bytes of JSON; ``None``: nothing)."""
    if meta is None:
        return []
    return find_secrets(_decoded(meta), allow=allow)


def find_secrets_in_metas(metas: Iterable[tuple[str, "bytes | str | None"]], *,
                          allow: Iterable[str] = ()) -> list[KeyFinding]:
    """The findings of many keys' canonical requests, as ``(key, path, detector)``."""
    allow = list([allow] if isinstance(allow, str) else allow)
    _allow_matcher(allow)  # a bad pattern fails before any scan
    return [KeyFinding(key, f.path, f.detector)
            for key, meta in metas for f in find_secrets_in_meta(meta, allow=allow)]


def refusal_message(findings: list[KeyFinding], what: str, *, shown: int = 20) -> str:
    """The error text for refusing to publish ``findings`` (``what``: "a bundle", "an export").

    Names each key, path and detector and says how to fix it; never contains a detected value.
    """
    lines = [f"key {f.key}: {f.path} ({f.detector})" for f in findings[:shown]]
    if len(findings) > shown:
        lines.append(f"... and {len(findings) - shown} more")
    paths = sorted({f.path for f in findings})
    allow = " ".join(f"--allow '{p}'" for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
    return (f"refusing to write {what}: the secret scanner flags what looks like a credential in the "
            f"canonical request of {len({f.key for f in findings})} key(s), and it would leave the "
            "machine with the samples:\n  " + "\n  ".join(lines) + "\n"
            "Fix: move the credential to a header / api_key / a transport field (those never enter "
            f"keys) and re-run, or pass {allow} (allow= in the API) if it is not a credential.")


class Masker:
    """Hides the values the scanner detected in one canonical request, wherever they appear.

    ``masker(value)`` returns a copy of a JSON value (or a string) with every detected value
    replaced by ``***``; use it on the request and on what is shown beside it (a sample that
    echoes the prompt). Its ``repr`` shows how many values it hides, never them.
    """

    def __init__(self, secrets: Iterable[str], mask: str = MASK) -> None:
        # Longest first, so a value that contains another is hidden whole. A detector may report
        # part of a token (detect-secrets' JWT plugin stops before the signature): the whole run
        # of token characters around a detected value is hidden.
        ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._secrets = [re.compile(f"{_RUN}{re.escape(s)}{_RUN_END}") for s in ordered]
        self._mask = mask

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def __call__(self, value: Any) -> Any:
        if not self._secrets:
            return value
        if isinstance(value, str):
            for secret in self._secrets:
                value = secret.sub(self._mask, value)
            return value
        if isinstance(value, dict):
            return {self(k) if isinstance(k, str) else k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        return value

    def __repr__(self) -> str:
        return f"Masker(hides={len(self._secrets)})"


def masker_for(value: Any, *, allow: Iterable[str] = ()) -> Masker:
    """A :class:`Masker` for the values detected in the JSON ``value`` (a decoded meta)."""
    secrets: list[str] = []
    for _path, name, text, opaque in _walk(value, "$", "", _allow_matcher(allow)):
        for _detector, secret in _scan_leaf(name, text, opaque):
            # A detector reporting text that is not literally in the leaf (never seen with the
            # shipped plugins) hides the whole leaf, so nothing detected is ever shown.
            secrets.append(secret if secret in text else text)
    return Masker(secrets)


def mask_secrets(value: Any, *, allow: Iterable[str] = ()) -> Any:
    """A copy of the JSON ``value`` with each detected credential replaced by ``***``."""
    return masker_for(value, allow=allow)(value)

