"""Built-in explainers: ``token-activations`` (OpenAI style) and ``highlighted`` (delphi style).

Registered through the ``register_explainers`` hook like any plugin's. Prompts live in
:mod:`.prompts`; how tokens and activations are written (and the single 0-10
normalisation rule) in :mod:`.formatting`; which examples are shown in :mod:`.selection`.
"""

from __future__ import annotations

import featurelens
from featurelens.core.hookspecs import Register
from featurelens.labelers.explainers.highlighted import HighlightedExplainer
from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer

featurelens_api = 1

__all__ = ["HighlightedExplainer", "TokenActivationsExplainer"]


@featurelens.hookimpl
def register_explainers(register: Register) -> None:
    register("token-activations", TokenActivationsExplainer,
             description="token<TAB>activation tables, 0-10 (OpenAI automated-interpretability style)")
    register("highlighted", HighlightedExplainer,
             description="firing tokens wrapped in <<>> in their text (delphi style)")
