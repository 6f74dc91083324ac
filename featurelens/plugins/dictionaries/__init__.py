"""Built-in dictionary learners, registered through the same hook as plugins' ones.

Registration imports nothing heavy: each learner's module (and torch) is imported the
first time the learner is built (see :mod:`featurelens.core.host.lazy`)."""

from __future__ import annotations

import featurelens
from featurelens.core.host.hookspecs import Register
from featurelens.core.host.lazy import LazyFactory, lazy_exports

featurelens_api = 1

_HERE = "featurelens.plugins.dictionaries"
_EXPORTS = {"BatchTopKSAE": f"{_HERE}.batchtopk", "JumpReluSAE": f"{_HERE}.jumprelu",
            "ReluSAE": f"{_HERE}.relu", "SparseAutoencoder": f"{_HERE}.sae", "TopKSAE": f"{_HERE}.topk",
            "make_transcoder": f"{_HERE}.transcoder"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)


def _lazy(name: str) -> LazyFactory:
    return LazyFactory(f"{_EXPORTS[name]}:{name}")


@featurelens.hookimpl
def register_dictionary_learners(register: Register) -> None:
    register("topk", _lazy("TopKSAE"), description="TopK SAE: k largest features per token, sparse-aware training, AuxK")
    register("batchtopk", _lazy("BatchTopKSAE"), description="BatchTopK SAE: k per token on average over the batch, threshold at inference")
    register("relu", _lazy("ReluSAE"), description="ReLU SAE with an L1 penalty (SAELens 'standard')")
    register("jumprelu", _lazy("JumpReluSAE"), description="JumpReLU SAE: per-feature thresholds, L0 penalty (Gemma Scope)")
    register("transcoder", _lazy("make_transcoder"), description="Transcoder: MLP input -> MLP output, optional skip connection")
    register("identity", LazyFactory("featurelens.plugins.identity:IdentityDictionary"),
             description="One feature per neuron of the hookpoint (positive part); no training")
