"""featurelens-transformerlens: the ``transformerlens`` model backend.

Registering costs nothing: TransformerLens (and torch) are imported the first time a
backend is built, not when featurelens starts and loads its plugins.
"""

from __future__ import annotations

from typing import Any

import featurelens

__version__ = "0.1.0"
featurelens_api = 1


def transformerlens_backend(model: str, **options: Any) -> Any:
    """Build the backend (imported here so that plugin discovery stays cheap)."""
    from featurelens_transformerlens.backend import TransformerLensBackend

    return TransformerLensBackend(model, **options)


@featurelens.hookimpl
def register_model_backends(register):
    register("transformerlens", transformerlens_backend,
             description="TransformerLens HookedTransformer, read at TransformerLens hook names")
