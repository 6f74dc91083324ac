"""Built-in scorers: ``simulation`` (OpenAI's method, three modes), ``detection`` and
``fuzzing`` (delphi's classifiers), ``embedding`` and ``token-check`` (no LLM). Registered through ``register_scorers`` like any
plugin's. Prompts live in :mod:`.prompts`, metrics in :mod:`.metrics`, the choice of
test windows in :mod:`.scoring_windows`."""

from __future__ import annotations

import featurelens
from featurelens.core.host.hookspecs import Register
from featurelens.scorers.classifier import DetectionScorer, FuzzingScorer
from featurelens.scorers.embedding import EmbeddingScorer
from featurelens.scorers.simulation import SimulationScorer
from featurelens.scorers.token_check import TokenCheckScorer

featurelens_api = 1

__all__ = ["DetectionScorer", "EmbeddingScorer", "FuzzingScorer", "SimulationScorer", "TokenCheckScorer"]


@featurelens.hookimpl
def register_scorers(register: Register) -> None:
    register("simulation", SimulationScorer,
             description="correlation of simulated and true activations (OpenAI method; "
                         "prompt log-probs, output log-probs or JSON)")
    register("detection", DetectionScorer,
             description="can the explanation tell activating from non-activating windows "
                         "(delphi); balanced accuracy")
    register("embedding", EmbeddingScorer,
             description="AUROC of explanation-window embedding similarity, no LLM "
                         "(needs featurelens[embedding])")
    register("fuzzing", FuzzingScorer,
             description="are the highlighted tokens the ones the explanation describes "
                         "(delphi); balanced accuracy")
    register("token-check", TokenCheckScorer,
             description="do the label's tokens pick out activating windows from random ones, "
                         "no LLM; balanced accuracy")
