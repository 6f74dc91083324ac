"""Built-in dictionary formats (SAELens, sparsify, dictionary_learning, Gemma Scope and
featurelens's own), registered through the same hook as plugins' formats."""

from __future__ import annotations

import featurelens
from featurelens.core.hookspecs import Register
from featurelens.plugins.formats.dictionary_learning import DictionaryLearningFormat
from featurelens.plugins.formats.gemma_scope import GemmaScopeFormat
from featurelens.plugins.formats.native import NativeFormat
from featurelens.plugins.formats.saelens import SAELensFormat
from featurelens.plugins.formats.sparsify import SparsifyFormat

featurelens_api = 1

__all__ = ["DictionaryLearningFormat", "GemmaScopeFormat", "NativeFormat", "SAELensFormat", "SparsifyFormat"]


@featurelens.hookimpl
def register_dictionary_formats(register: Register) -> None:
    register("featurelens", NativeFormat, description="featurelens's own folder: any learner, exactly (read/write)")
    register("saelens", SAELensFormat, description="SAELens cfg.json + sae_weights.safetensors (read/write)")
    register("sparsify", SparsifyFormat, description="EleutherAI sparsify, a folder per hookpoint (read/write)")
    register("dictionary_learning", DictionaryLearningFormat, description="saprmarks/dictionary_learning ae.pt + config.json (read, safe loading)")
    register("gemma_scope", GemmaScopeFormat, description="Gemma Scope params.npz JumpReLU (read)")
