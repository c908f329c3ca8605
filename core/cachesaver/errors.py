"""Exceptions raised by the engine.

Every error that is the caller's to fix subclasses ``ValueError`` or ``TypeError`` so that generic
handlers keep working, and its message names the field and says how to fix it.
"""
from __future__ import annotations

import warnings

__all__ = [
    "CacheSaverError",
    "InvalidRequestError",
    "InvalidRequestTypeError",
    "DuplicateRequestIdError",
    "NotSerializableError",
    "NonFiniteNumberError",
    "ModelOutputError",
    "CorruptSampleError",
    "StoreError",
    "PipelineClosedError",
    "OfflineMissError",
    "ReadOnlyStoreError",
    "BundleError",
    "SecretFoundError",
    "BundleSecretError",
    "CacheSaverWarning",
    "MetadataKeyWarning",
]


class CacheSaverError(Exception):
    """Base class of everything the engine raises on purpose."""


class InvalidRequestError(CacheSaverError, ValueError):
    """A request field has a value the engine cannot honour (``n < 1``, an empty namespace...)."""


class InvalidRequestTypeError(CacheSaverError, TypeError):
    """A request field has the wrong type (a namespace that is not a string...)."""


class DuplicateRequestIdError(InvalidRequestError):
    """Two requests waiting at the same time share one ``request_id``.

    Request ids order samples inside a batch (G4), so they must be unique among requests in flight.
    """


class NotSerializableError(CacheSaverError, TypeError):
    """A sample (or a key field) is not plain JSON, so it cannot be stored without pickle (G7)."""


class NonFiniteNumberError(InvalidRequestError, NotSerializableError):
    """A key field holds NaN or an infinity: the caller's request is invalid (JSON, and so a key,
    has no such number), a ``ValueError`` that front ends answer as a bad request (HTTP 400), and
    still a :class:`NotSerializableError` for code that catches that. The message names the path.
    """


class ModelOutputError(CacheSaverError, TypeError):
    """The user's model returned something other than a ``Response`` with a list of samples."""


class CorruptSampleError(CacheSaverError, ValueError):
    """A stored value is not what the engine wrote (garbage bytes, a planted pickle...).

    The message names the key and index; the rest of the store keeps working.
    """


class StoreError(CacheSaverError, RuntimeError):
    """The store could not be reached or refused an operation; nothing was half-written."""


class PipelineClosedError(CacheSaverError, RuntimeError):
    """A request was made on a pipeline that is closed or closing."""


class OfflineMissError(StoreError, LookupError):
    """An offline pipeline (``offline=True``, or a read-only store: a bundle, a cache on a
    read-only mount) was asked for a sample it does not hold (a ``StoreError``: the store cannot
    keep a new one). No model was called; the message names the prompt, the key, the
    namespace, the position asked for and how many samples the store holds.
    """


class ReadOnlyStoreError(StoreError):
    """A write (append, delete, clear) was attempted on a read-only store such as a bundle."""


class BundleError(CacheSaverError, ValueError):
    """A bundle file is damaged, tampered with or not a bundle; the message names what failed
    (the key and sample, the manifest field or the file member)."""


class SecretFoundError(CacheSaverError, ValueError):
    """Samples were about to leave the machine (an export, a bundle) while the secret scanner
    flags what looks like a credential in a key's canonical request (G7); nothing was written.

    The message names each key, JSON path and detector and how to fix it, never the value;
    ``findings`` holds them as ``(key, path, detector)`` tuples.
    """

    def __init__(self, message: str, findings: "tuple | list" = ()) -> None:
        super().__init__(message)
        self.findings = tuple(findings)


class BundleSecretError(BundleError, SecretFoundError):
    """A bundle (create or merge) refused because of a flagged credential (see ``SecretFoundError``)."""


class CacheSaverWarning(UserWarning):
    """Base class of the warnings CacheSaver issues (filter them with this category)."""


class MetadataKeyWarning(CacheSaverWarning):
    """A call's metadata (or arguments) has a ``cachesaver_*`` key CacheSaver does not read,
    usually a misspelling (``cachesaver_namepsace``): the call ran in the default namespace.

    Shown on every such call, not once per code location (the filter below is appended, so a
    user's own ``warnings.filterwarnings("ignore", category=MetadataKeyWarning)`` still wins).
    """


# Python shows a warning once per code location by default; a misspelled key is a new mistake on
# every call that has it (each lands in the wrong namespace), so this one is shown every time.
warnings.filterwarnings("always", category=MetadataKeyWarning, append=True)
