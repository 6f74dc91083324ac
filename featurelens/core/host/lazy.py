"""Factories that import their module on first use.

Built-in plugins register their components when the process starts, and that must not
import torch or transformers: ``featurelens --help`` and ``featurelens sql`` never need
them. A :class:`LazyFactory` stands in for a class in the registry and imports it the
first time the component is created (or an attribute of it is read).
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyFactory:
    """``module:attribute``, imported when first called or inspected."""

    def __init__(self, target: str):
        module, sep, attribute = target.partition(":")
        if not sep or not module or not attribute:
            raise ValueError(f"LazyFactory target {target!r} is not 'module:attribute'.")
        self.target = target
        self._resolved: Any = None

    def resolve(self) -> Any:
        """The real factory (imported once)."""
        if self._resolved is None:
            module, _, attribute = self.target.partition(":")
            self._resolved = getattr(importlib.import_module(module), attribute)
        return self._resolved

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("target", "_resolved"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"LazyFactory({self.target!r})"


def lazy_exports(module_name: str, names: dict[str, str]) -> Any:
    """A module ``__getattr__`` that imports ``name`` from ``names[name]`` on first access,
    so ``from package import Class`` keeps working without importing it at start-up."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
