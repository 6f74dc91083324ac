"""A tiny random Llama and a random per-layer transcoder set for graph tests (float64)."""

from __future__ import annotations

from pathlib import Path

import torch

from featurelens.core.transcoder_set import TranscoderSet
from featurelens.plugins.dictionaries.transcoder import make_transcoder
from featurelens.testing import make_tiny_llama


def random_transcoders(n_layers: int, d_model: int, d_sae: int, *, skip: bool, seed: int = 0,
                       dtype: torch.dtype = torch.float64) -> TranscoderSet:
    """ReLU transcoders with random weights; a negative encoder bias keeps them sparse."""
    torch.manual_seed(seed)
    transcoders = {}
    for layer in range(n_layers):
        tc = make_transcoder(d_model, d_sae, activation="relu", skip=skip)
        with torch.no_grad():
            tc.W_enc.normal_(0, 1 / d_model**0.5)
            tc.b_enc.uniform_(-0.6, 0.1)
            tc.b_dec.normal_(0, 0.01)
            if skip:
                tc.W_skip.normal_(0, 0.05)
        transcoders[layer] = tc.to(dtype)
    return TranscoderSet(transcoders)


def tiny_graph_parts(path: Path, *, skip: bool, n_layers: int = 2, d_sae: int = 64):
    """(model, tokenizer, transcoder set) for the tiny Llama saved in ``path`` (made there if
    missing), the model in float64."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (Path(path) / "config.json").exists():
        make_tiny_llama(path, n_layers=n_layers, d_model=32)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float64).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer, random_transcoders(n_layers, 32, d_sae, skip=skip)
