"""Registers the built-in ``hf`` model backend without importing torch or transformers:
:mod:`featurelens.plugins.hf_backend` is imported the first time a backend is built."""

from __future__ import annotations

import featurelens
from featurelens.core.host.hookspecs import Register
from featurelens.core.host.lazy import LazyFactory

featurelens_api = 1


@featurelens.hookimpl
def register_model_backends(register: Register) -> None:
    register("hf", LazyFactory("featurelens.plugins.hf_backend:HFBackend"),
             description="Any transformers causal LM (local folder, hub id, or smollm2)")
