"""Built-in dictionary formats (SAELens, sparsify, dictionary_learning, Gemma Scope, Llama Scope,
transcoder sets, circuit-tracer, single-file .pt state dicts and featurelens's own), registered through the same hook as plugins' formats.

Registration imports nothing heavy: a format's module (and torch) is imported the first
time the format is built (see :mod:`featurelens.core.host.lazy`)."""

from __future__ import annotations

import featurelens
from featurelens.core.host.hookspecs import Register
from featurelens.core.host.lazy import LazyFactory, lazy_exports

featurelens_api = 1

_HERE = "featurelens.plugins.formats"
_EXPORTS = {"DictionaryLearningFormat": f"{_HERE}.dictionary_learning", "GemmaScopeFormat": f"{_HERE}.gemma_scope",
            "LlamaScopeFormat": f"{_HERE}.llama_scope",
            "NativeFormat": f"{_HERE}.native", "SAELensFormat": f"{_HERE}.saelens",
            "SparsifyFormat": f"{_HERE}.sparsify", "TranscoderSetFormat": f"{_HERE}.transcoder_sets",
            "CircuitTracerFormat": f"{_HERE}.transcoder_sets", "PtFileFormat": f"{_HERE}.pt_files"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)


def _lazy(name: str) -> LazyFactory:
    return LazyFactory(f"{_EXPORTS[name]}:{name}")


@featurelens.hookimpl
def register_dictionary_formats(register: Register) -> None:
    register("featurelens", _lazy("NativeFormat"), description="featurelens's own folder: any learner, exactly (read/write)")
    register("saelens", _lazy("SAELensFormat"), description="SAELens cfg.json + sae_weights.safetensors (read/write)")
    register("sparsify", _lazy("SparsifyFormat"), description="EleutherAI sparsify, a folder per hookpoint (read/write)")
    register("dictionary_learning", _lazy("DictionaryLearningFormat"), description="saprmarks/dictionary_learning ae.pt + config.json (read, safe loading)")
    register("gemma_scope", _lazy("GemmaScopeFormat"),
             description="Gemma Scope params.npz and Gemma Scope 2 params.safetensors JumpReLU (read)")
    register("llama_scope", _lazy("LlamaScopeFormat"),
             description="Llama Scope (lm_saes) hyperparams.json + checkpoints/final.safetensors (read)")
    register("transcoder_set", _lazy("TranscoderSetFormat"),
             description="a transcoder per layer as one dictionary: transcoder_set.json naming each layer (read/write)")
    register("circuit_tracer", _lazy("CircuitTracerFormat"),
             description="circuit-tracer config.yaml per-layer files (read/write), cross-layer W_enc_l/W_dec_l, "
                         "or one layer's file (read)")
    register("pt_file", _lazy("PtFileFormat"),
             description="one torch.save SAE state dict file in a SAELens pretrained layout: DeepSeek R1, Goodfire, "
                         "Qwen Scope (read, safe loading)")
