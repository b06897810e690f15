"""Support for the old flat module paths, kept for one release as thin re-export shims."""

from __future__ import annotations

import importlib
import warnings
from typing import Any


def reexport(old: str, new: str, namespace: dict[str, Any]) -> None:
    """Fill a shim module's ``namespace`` with the public names of ``new`` and warn once.

    Args:
        old: The old dotted module path (the shim's ``__name__``).
        new: The dotted path the code moved to.
        namespace: The shim's ``globals()``.
    """
    module = importlib.import_module(new)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        namespace[name] = getattr(module, name)
    namespace["__all__"] = list(names)
    namespace["__moved_to__"] = new
    warnings.warn(
        f"{old} moved to {new}; import from there (the old path goes in the next release).",
        DeprecationWarning,
        stacklevel=3,
    )
