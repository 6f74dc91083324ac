"""featurelens: extract, explain and score dictionary features into a DuckDB feature store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

__version__ = "0.1.0"

#: The plugin API this host implements. A plugin module may declare
#: ``featurelens_api = 1`` (or a list of versions it supports); the host refuses a
#: plugin whose declaration does not include this number, with a clear message.
PLUGIN_API_VERSION = 1

#: Marker for hook implementations in plugins: ``@featurelens.hookimpl``.
hookimpl = pluggy.HookimplMarker("featurelens")

if TYPE_CHECKING:
    from featurelens.core.store.database import Store


def open_store(path: str | None = None, *, read_only: bool = False) -> "Store":
    """Open (creating and migrating if needed) the feature store at ``path``.

    ``path`` defaults to ``$FEATURELENS_STORE`` or ``./featurelens.duckdb``.
    ``store.sql(query)`` returns a polars DataFrame.
    """
    from featurelens.core.store.database import Store

    return Store.open(path, read_only=read_only)


#: Notebook helpers, imported on first use so ``import featurelens`` stays light.
_NOTEBOOK = ("load_model", "load_dictionary", "feature_activations")


def __getattr__(name: str):  # PEP 562: featurelens.load_model etc. without importing torch up front
    if name in _NOTEBOOK:
        from featurelens import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'featurelens' has no attribute {name!r}")


def steering(model: Any, dictionary: Any, edits: Any, **options: Any) -> Any:
    """Edit dictionary features while a ``with`` block runs: ``with featurelens.steering(model,
    dictionary, {123: 8.0}): ...`` (see :func:`featurelens.interventions.hooks.steering`)."""
    from featurelens.interventions.hooks import steering as _steering

    return _steering(model, dictionary, edits, **options)


__all__ = ["PLUGIN_API_VERSION", "__version__", "feature_activations", "hookimpl", "load_dictionary",
           "load_model", "open_store", "steering"]
