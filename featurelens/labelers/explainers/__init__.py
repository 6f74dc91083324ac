"""Built-in explainers: ``token-activations`` (OpenAI style), ``highlighted`` (delphi
style) and ``token-lookup`` (no LLM).

Registered through the ``register_explainers`` hook like any plugin's. Prompts live in
:mod:`.prompts`; how tokens and activations are written (and the single 0-10
normalisation rule) in :mod:`featurelens.llm.window_text`; which examples are shown in :mod:`featurelens.llm.example_selection`.
"""

from __future__ import annotations

import featurelens
from featurelens.core.host.hookspecs import Register
from featurelens.labelers.explainers.highlighted import HighlightedExplainer
from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.labelers.explainers.token_lookup import TokenLookupExplainer

featurelens_api = 1

__all__ = ["HighlightedExplainer", "TokenActivationsExplainer", "TokenLookupExplainer"]


@featurelens.hookimpl
def register_explainers(register: Register) -> None:
    register("token-activations", TokenActivationsExplainer,
             description="firing tokens marked with their 0-10 strength in one line per window; "
                         "style=table: token<TAB>activation tables (OpenAI style)")
    register("highlighted", HighlightedExplainer,
             description="firing tokens wrapped in <<>> in their text (delphi style)")
    register("token-lookup", TokenLookupExplainer,
             description="no LLM: the tokens (and contexts) carrying most activation mass, "
                         "with coverage and precision")
