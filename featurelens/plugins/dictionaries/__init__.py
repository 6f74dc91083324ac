"""Built-in dictionary learners, registered through the same hook as plugins' ones."""

from __future__ import annotations

import featurelens
from featurelens.core.hookspecs import Register
from featurelens.plugins.dictionaries.batchtopk import BatchTopKSAE
from featurelens.plugins.dictionaries.jumprelu import JumpReluSAE
from featurelens.plugins.dictionaries.relu import ReluSAE
from featurelens.plugins.dictionaries.sae import SparseAutoencoder
from featurelens.plugins.dictionaries.topk import TopKSAE
from featurelens.plugins.dictionaries.transcoder import make_transcoder

featurelens_api = 1

__all__ = ["BatchTopKSAE", "JumpReluSAE", "ReluSAE", "SparseAutoencoder", "TopKSAE", "make_transcoder"]


@featurelens.hookimpl
def register_dictionary_learners(register: Register) -> None:
    register("topk", TopKSAE, description="TopK SAE: k largest features per token, sparse-aware training, AuxK")
    register("batchtopk", BatchTopKSAE, description="BatchTopK SAE: k per token on average over the batch, threshold at inference")
    register("relu", ReluSAE, description="ReLU SAE with an L1 penalty (SAELens 'standard')")
    register("jumprelu", JumpReluSAE, description="JumpReLU SAE: per-feature thresholds, L0 penalty (Gemma Scope)")
    register("transcoder", make_transcoder, description="Transcoder: MLP input -> MLP output, optional skip connection")
