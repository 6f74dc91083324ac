"""featurelens-nnsight: the ``nnsight`` model backend.

Registering costs nothing: nnsight (and torch) are imported the first time a backend is
built, not when featurelens starts and loads its plugins.
"""

from __future__ import annotations

from typing import Any

import featurelens

__version__ = "0.1.0"
featurelens_api = 1


def nnsight_backend(model: str, **options: Any) -> Any:
    """Build the backend (imported here so that plugin discovery stays cheap)."""
    from featurelens_nnsight.backend import NNsightBackend

    return NNsightBackend(model, **options)


@featurelens.hookimpl
def register_model_backends(register):
    register("nnsight", nnsight_backend,
             description="nnsight LanguageModel over a transformers causal LM, read by tracing")
