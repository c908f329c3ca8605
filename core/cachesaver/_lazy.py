"""Lazy package exports (PEP 562): a name loads its module on first use.

``__getattr__, __dir__ = lazy_exports(__name__, {"Name": "module", ...}, globals())`` in a
package's ``__init__`` keeps ``import package`` cheap and free of import cycles: nothing is
imported until a name is used, and then only the module that defines it.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any, Callable

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose public names are ``exports``
    (name -> the submodule that defines it). A loaded name is kept in ``namespace``."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", exports))

    return __getattr__, __dir__
