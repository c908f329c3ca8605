"""detect-secrets plugins for credential shapes its default set does not catch in LLM requests.

Measured against detect-secrets 1.5 (lines shaped ``"<name>": "<value>"``, as
:mod:`cachesaver.secrets` feeds them), its default plugins miss:

- names ending in ``token`` (``authToken``, ``idToken``, ``access_token``) and ``passphrase``:
  its keyword list has ``password``, ``secret``, ``api_key``..., not these; a random value under
  them is caught only when its entropy happens to pass the high-entropy limit;
- ``Authorization`` header values (``Bearer <token>``, ``Basic <base64 user:pass>``): the
  space breaks the quoted-string rule of the entropy plugins;
- LLM-provider key formats (Groq ``gsk_``, OpenAI-compatible ``sk-`` keys without OpenAI's
  ``T3BlbkFJ`` marker, Anthropic ``sk-ant-``, Hugging Face ``hf_``, Google ``AIza``, xAI
  ``xai-``) unless the key is the whole string *and* random enough; inside prompt text, never.

Each detector is a ``RegexBasedDetector`` (detect-secrets' plugin interface), so it runs with
the same filters and reports like the shipped ones. Values that are ordinary content stay
unflagged: ``{"token": "NOUN"}``, ``"Basic arithmetic calculator"``, ``"Token classification
helper"``, ``stop=["sk-learnmodel"]``.
"""
from __future__ import annotations

import base64
import binascii
import re
import string
from typing import Generator

from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

__all__ = ["CredentialNameDetector", "AuthorizationHeaderDetector", "LLMProviderKeyDetector", "CUSTOM_PLUGINS"]

_TOKEN_CHARS = r"A-Za-z0-9._~+/=-"
_ENTROPY = Base64HighEntropyString()
#: Entropy (bits per character) above which a value under a token-like name looks random.
#: Words and identifiers of 16+ characters reach ~3.5 only when most letters differ.
TOKEN_ENTROPY_LIMIT = 3.0


def _letters_and_digits(value: str) -> bool:
    return any(c in string.ascii_letters for c in value) and any(c in string.digits for c in value)


class CredentialNameDetector(RegexBasedDetector):
    """A value under a credential name detect-secrets' keyword list lacks: a random-looking
    value (16+ token characters, entropy above :data:`TOKEN_ENTROPY_LIMIT`) under a name ending
    in ``token``, or any value under ``passphrase``."""

    secret_type = "Credential-named Field"
    # The name's start is not matched: it changes nothing captured, and would make a long line quadratic.
    _token = re.compile(r"token[\"']?\s*[:=]\s*[\"']?([" + _TOKEN_CHARS + r"]{16,})", re.I)
    _passphrase = re.compile(r"pass[_-]?phrase[\"']?\s*[:=]\s*[\"']([^\"'\s][^\"']*)[\"']", re.I)
    denylist = [_token, _passphrase]

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for match in self._token.findall(string):
            if _ENTROPY.calculate_shannon_entropy(match) > TOKEN_ENTROPY_LIMIT:
                yield match
        yield from self._passphrase.findall(string)


class AuthorizationHeaderDetector(RegexBasedDetector):
    """An HTTP ``Authorization`` value: ``Bearer``/``Token`` and an opaque token (16+ token
    characters with letters and digits), or ``Basic`` and base64 of ``user:password``."""

    secret_type = "Authorization Header Credentials"
    _scheme = re.compile(r"\b(?:Bearer|Token)\s+([" + _TOKEN_CHARS + r"]{16,})", re.I)
    _basic = re.compile(r"\bBasic\s+([A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])", re.I)
    denylist = [_scheme, _basic]

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        for match in self._scheme.findall(string):
            if _letters_and_digits(match):
                yield match
        for match in self._basic.findall(string):
            if _basic_credentials(match):
                yield match


def _basic_credentials(token: str) -> bool:
    """True if ``token`` is base64 of printable ``user:password`` text."""
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in text and text.isprintable()


class LLMProviderKeyDetector(RegexBasedDetector):
    """API keys of LLM providers by their documented prefixes, anywhere in a line."""

    secret_type = "LLM Provider API Key"
    _start = r"(?<![A-Za-z0-9_-])"
    denylist = [
        re.compile(_start + r"gsk_[A-Za-z0-9]{48,}"),                       # Groq
        re.compile(_start + r"sk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{32,}"),  # OpenAI-compatible, Anthropic
        re.compile(_start + r"hf_[A-Za-z0-9]{30,}"),                        # Hugging Face
        re.compile(_start + r"AIza[0-9A-Za-z_-]{35}"),                      # Google AI / Gemini
        re.compile(_start + r"xai-[A-Za-z0-9]{64,}"),                       # xAI
    ]


CUSTOM_PLUGINS = (CredentialNameDetector, AuthorizationHeaderDetector, LLMProviderKeyDetector)
